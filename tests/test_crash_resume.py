"""Crash safety: SIGKILL mid-training, SIGTERM (pre-emption), checkpoints that never load half-written."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, cli, corpus_file

from textgen.export import load_export
from textgen.train import TrainingError, find_resume_checkpoint
from textgen.training.checkpointing import AtomicCheckpointIO, is_complete_checkpoint

QUICK = ["trainer.enable_progress_bar=false", "model.embedding=16", "model.hidden=32", "model.layers=1",
         "model.encoder.hidden=16", "data.context_chars=16", "data.target_chars=24", "data.batch_size=8",
         "data.val_batch_size=64", "data.stride=11", "trainer.val_check_interval=40"]
MAX_STEPS = 300


@pytest.fixture()
def run_args(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(corpus_file("shakespeare").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return ["data=text", f"data.path={text}", f"export.dir={tmp_path / 'ck'}", "export.name=crash",
            f"hydra.run.dir={tmp_path / 'run'}", f"trainer.max_steps={MAX_STEPS}", *QUICK]


def start_training(tmp_path, args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "textgen.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path, proc, timeout=180.0):
    """Wait until ``path`` exists while ``proc`` still runs (fails if the run ends first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def saved_step(path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


@pytest.mark.slow
def test_runs_stopped_by_sigterm_and_killed_by_sigkill_resume_to_the_same_final_step(tmp_path, run_args):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # SIGTERM (a pre-emption): last.ckpt saved at the step reached, a clean exit, no export yet.
    proc = start_training(tmp_path, run_args)
    wait_for(last, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    stopped_at = saved_step(last)
    assert 0 < stopped_at < MAX_STEPS
    assert f"SIGTERM at step {stopped_at} of {MAX_STEPS}: saved {last}; continue with resume=true" in out
    assert "Traceback" not in out and not (tmp_path / "ck" / "crash").exists()

    # Resumed, then SIGKILL as soon as it has written a checkpoint of its own.
    proc = start_training(tmp_path, [*run_args, "resume=true"])
    before = last.stat().st_mtime_ns
    deadline = time.monotonic() + 180
    while last.stat().st_mtime_ns == before:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and f"resuming from {last}" in out
    killed_at = saved_step(last)  # a complete checkpoint, whatever the moment of the kill
    assert stopped_at < killed_at < MAX_STEPS and not (tmp_path / "ck" / "crash").exists()

    # The same command again: it ends at max_steps, exactly, with an export that loads.
    cli("train", *run_args, "resume=true", cwd=tmp_path)
    metrics = json.loads((tmp_path / "ck" / "crash" / "metrics.json").read_text())
    assert metrics["steps"] == MAX_STEPS and saved_step(last) == MAX_STEPS
    assert load_export(tmp_path / "ck" / "crash").model.num_params() == metrics["params"]
    # One CSV log across the three processes, in step order, from the first validation (which
    # Lightning's CSVLogger would delete on resume) to the last, at the steps of an uninterrupted
    # run.  A SIGKILL right after a checkpoint may lose that validation's row.
    val_steps, train_steps = logged_steps(tmp_path / "run")
    assert val_steps == sorted(set(val_steps)) and val_steps[0] == 39 and val_steps[-1] == MAX_STEPS, val_steps
    assert set(val_steps) <= {*range(39, MAX_STEPS, 40), MAX_STEPS} and len(val_steps) >= MAX_STEPS // 40 - 1, val_steps
    assert train_steps == sorted(set(train_steps)) and train_steps[0] < stopped_at, train_steps


def logged_steps(run_dir) -> tuple[list[int], list[int]]:
    """The steps of the validation rows and of the training rows in a run's CSV log."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return ([int(row["step"]) for row in rows if row.get("val_bpc")],
            [int(row["step"]) for row in rows if row.get("train_loss")])


SIGTERM_AT = '''
import os, signal
from pytorch_lightning import Callback

class SigtermAt(Callback):
    """Sends this process a real SIGTERM as the validation at ``step`` ends."""
    def __init__(self, step):
        self.step = step
    def on_validation_end(self, trainer, pl_module):
        if trainer.global_step == self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)
'''


@pytest.mark.slow
def test_a_sigterm_right_after_a_validation_resumes_with_the_steps_of_an_uninterrupted_run(tmp_path, run_args):
    # The moment a pre-emption lands most often under load: the validation has just written
    # last.ckpt.  Saving it again after Lightning had counted the step made every step logged
    # after the resume one too high ([39, 80, 120, ..., 301]).
    (tmp_path / "sigterm_at.py").write_text(SIGTERM_AT, encoding="utf-8")
    args = [*run_args, "trainer.max_steps=120"]
    stopped = cli("train", *args, "+callbacks.sigterm._target_=sigterm_at.SigtermAt", "+callbacks.sigterm.step=40",
                  cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    out = stopped.stdout + stopped.stderr
    assert "SIGTERM at step 40 of 120" in out and saved_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 40
    cli("train", *args, "resume=true", cwd=tmp_path)
    val_steps, train_steps = logged_steps(tmp_path / "run")
    assert val_steps == [39, 79, 119], val_steps
    assert train_steps == [24, 49, 74, 99], train_steps
    assert json.loads((tmp_path / "ck" / "crash" / "metrics.json").read_text())["steps"] == 120


WRITER = """
import sys, torch
from textgen.training.checkpointing import AtomicCheckpointIO
io, state = AtomicCheckpointIO(), {"weights": torch.zeros(4_000_000), "global_step": 0}
print("ready", flush=True)
for step in range(1, 10_000):
    state["weights"].fill_(step); state["global_step"] = step
    io.save_checkpoint(state, sys.argv[1])
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.3,):  # more delays, more evidence; one keeps the test short
        with subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True) as proc:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)  # a 16 MB checkpoint: a kill lands mid-write most of the time
            proc.kill()
        if path.exists():
            state = torch.load(path, weights_only=False)
            assert bool((state["weights"] == state["global_step"]).all())
    # A kill mid-write leaves a temporary file beside the checkpoint; the next save clears it.
    AtomicCheckpointIO().save_checkpoint({"global_step": 0}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0600


def test_resume_skips_a_truncated_checkpoint(tmp_path, caplog):
    older, newer = tmp_path / "name" / "t1" / "checkpoints", tmp_path / "name" / "t2" / "checkpoints"
    for folder in (older, newer):
        folder.mkdir(parents=True)
    torch.save({"global_step": 10}, older / "last.ckpt")
    torch.save({"global_step": 20}, newer / "last.ckpt")
    data = (newer / "last.ckpt").read_bytes()
    (newer / "last.ckpt").write_bytes(data[: len(data) // 2])  # as a writer killed mid-file would leave it
    assert not is_complete_checkpoint(newer / "last.ckpt") and is_complete_checkpoint(older / "last.ckpt")

    run_dir = tmp_path / "name" / "t3"
    assert find_resume_checkpoint(True, run_dir, multirun=False, name="name") == str(older / "last.ckpt")
    assert "skipping" in caplog.text and str(newer / "last.ckpt") in caplog.text
    with pytest.raises(TrainingError, match="not a complete checkpoint"):
        find_resume_checkpoint(str(newer / "last.ckpt"), run_dir, multirun=False, name="name")
    # resume=auto: the same search, but a fresh start where there is nothing to continue.
    assert find_resume_checkpoint("auto", tmp_path / "other" / "t1", multirun=False, name="other") is None
    with pytest.raises(TrainingError, match="no complete last.ckpt"):
        find_resume_checkpoint(True, tmp_path / "other" / "t1", multirun=False, name="other")
    # A run given its own hydra.run.dir (here tmp/name/mine, its name another) continues only its own
    # folder, never the runs beside it.
    assert find_resume_checkpoint("auto", tmp_path / "name" / "mine", multirun=False, name="mine-run") is None
