"""The budget-aware learning-rate schedules of conf/scheduler: warmup, then decay to a floor."""

import csv

import pytest
import torch
from test_cli import quick_train

from textgen.training.schedule import warmup_cosine, warmup_linear

PEAK = 0.01
STEPS = 100


def one_parameter_sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)


def rates(schedule, **kwargs) -> list[float]:
    """The learning rate at each of STEPS steps, the budget's progress being step / STEPS."""
    optimizer = one_parameter_sgd()
    scheduler = schedule(optimizer, progress=lambda step: step / STEPS, **kwargs)
    seen = []
    for _ in range(STEPS + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_linear_warms_up_then_falls_in_a_straight_line_to_its_floor():
    lr = rates(warmup_linear, warmup_steps=10, min_lr_ratio=0.1)
    assert lr[0] == pytest.approx(PEAK / 10) and lr[9] == pytest.approx(PEAK)
    assert lr[50] == pytest.approx(PEAK * (0.1 + 0.9 * 0.5))
    assert lr[STEPS] == pytest.approx(PEAK * 0.1)
    steps = [lr[i] - lr[i + 1] for i in range(10, STEPS)]
    assert max(steps) == pytest.approx(min(steps))  # constant slope after the warmup


def test_linear_goes_to_zero_by_default_and_is_below_cosine_early_above_it_late():
    linear = rates(warmup_linear, warmup_steps=0)
    cosine = rates(warmup_cosine, warmup_steps=0, min_lr_ratio=0.0)
    assert linear[STEPS] == pytest.approx(0.0, abs=1e-12)
    assert linear[25] < cosine[25] and linear[75] > cosine[75]


@pytest.mark.parametrize("schedule", [warmup_cosine, warmup_linear])
@pytest.mark.parametrize("kwargs", [{"warmup_steps": -1}, {"min_lr_ratio": 1.5}])
def test_schedules_reject_settings_out_of_range(schedule, kwargs):
    optimizer = one_parameter_sgd()
    with pytest.raises(ValueError, match="warmup_steps must be >= 0 and min_lr_ratio"):
        schedule(optimizer, progress=lambda step: 0.0, **kwargs)


def test_training_follows_the_linear_schedule_chosen_on_the_command_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    quick_train(tmp_path, corpus, f"hydra.run.dir={tmp_path / 'run'}", "scheduler=linear", "scheduler.warmup_steps=2",
                "optim.lr=0.01", "trainer.max_steps=10", "trainer.val_check_interval=5", "trainer.log_every_n_steps=1")
    with open(tmp_path / "run" / "logs" / "metrics.csv", newline="") as file:
        logged = {int(row["step"]): float(row["lr-AdamW/pg1"]) for row in csv.DictReader(file) if row["lr-AdamW/pg1"]}
    # Warm-up to 0.01 over two steps, then the line from 0.01 at step 0 to 0 at step 10.
    assert logged[0] == pytest.approx(0.005) and logged[1] == pytest.approx(0.01)
    assert [logged[step] for step in range(2, 10)] == pytest.approx([0.01 * (1 - step / 10) for step in range(2, 10)])
