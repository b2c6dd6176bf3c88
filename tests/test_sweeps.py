"""Hydra sweeps: a grid with its summary table, failed jobs, the parallel launcher, the Optuna and SLURM configs."""

import csv
import json

import pytest
from conftest import REPO, cli, corpus_file
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

import textgen.train  # noqa: F401  (registers the config resolvers)
from textgen.training.sweep import claim_export_name, collect_rows, write_summary

QUICK = ["trainer.enable_progress_bar=false", "model.embedding=16", "model.layers=1", "model.encoder.hidden=16",
         "data.context_chars=16", "data.target_chars=24", "data.batch_size=8", "data.val_batch_size=64",
         "data.stride=11", "trainer.max_steps=4", "trainer.val_check_interval=2"]


@pytest.fixture()
def small_text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_file("shakespeare").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return path


def sweep(tmp_path, small_text, *args, check=True):
    return cli("train", "-m", *args, "data=text", f"data.path={small_text}", f"export.dir={tmp_path / 'ck'}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", *QUICK, cwd=tmp_path, check=check)


def summary_rows(tmp_path):
    with open(tmp_path / "sweep" / "summary.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_grid_exports_every_job_and_ends_with_a_summary_table(tmp_path, small_text):
    result = sweep(tmp_path, small_text, "model=lstm,gru", "model.hidden=16,24")
    # Two jobs per cell share a name: the first to export takes it, the other adds its job number.
    exports = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert exports == ["text-gru", "text-gru-3", "text-lstm", "text-lstm-1"]
    assert "sweep summary:" in result.stdout
    rows = summary_rows(tmp_path)
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"] and {r["status"] for r in rows} == {"completed"}
    assert [r["config"] for r in rows] == ["model=lstm model.hidden=16", "model=lstm model.hidden=24",
                                          "model=gru model.hidden=16", "model=gru model.hidden=24"]
    assert sorted(row["export"].rsplit("/", 1)[-1] for row in rows) == exports
    for row in rows:
        metrics = json.loads((tmp_path / "ck" / row["export"].rsplit("/", 1)[-1] / "metrics.json").read_text())
        assert float(row["val_bpc"]) == pytest.approx(metrics["val_bpc"]) and int(row["steps"]) == 4
        assert float(row["train_seconds"]) > 0
    table = (tmp_path / "sweep" / "summary.md").read_text()
    assert "4 jobs: 4 completed, 0 failed" in table and "| 3 | completed | `model=gru model.hidden=24` |" in table


@pytest.mark.slow
def test_a_failed_job_is_a_failed_row_and_the_others_still_run(tmp_path, small_text):
    result = sweep(tmp_path, small_text, "model.dropout=1.5,0.0", "model.hidden=16", check=False)
    assert result.returncode != 0  # Hydra reports the failed job after running the others
    rows = summary_rows(tmp_path)
    assert [(r["job"], r["status"], r["config"]) for r in rows] == [
        ("0", "failed", "model.dropout=1.5"), ("1", "completed", "model.dropout=0.0")]
    assert "invalid model config field(s) ['dropout']" in rows[0]["error"] and rows[1]["val_bpc"]
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["text-gru"]


@pytest.mark.slow
def test_optuna_search_reports_val_bpc_for_each_trial(tmp_path, small_text):
    # Command-line ranges join the config's search space (here: smaller sizes than it searches).
    result = sweep(tmp_path, small_text, "hydra/sweeper=tune", "hydra.sweeper.n_trials=2", "model.hidden=choice(16,24)")
    assert "Best value:" in result.stdout + result.stderr
    rows = summary_rows(tmp_path)
    assert len(rows) == 2 and all(r["status"] == "completed" and float(r["val_bpc"]) > 0 for r in rows)
    assert all("optim.lr=" in r["config"] and "model.dropout=" in r["config"] for r in rows)


def compose_train(*overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve, as inside a job
    return cfg


def test_tune_sweeper_searches_lr_dropout_and_size_against_val_bpc():
    cfg = compose_train("hydra/sweeper=tune")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert set(sweeper.params) == {"optim.lr", "model.dropout", "model.hidden"}
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed


def test_slurm_launcher_and_trainer_compose_for_a_multi_node_job():
    cfg = compose_train("hydra/launcher=slurm", "trainer=slurm", "hydra.launcher.partition=gpu",
                        "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.tasks_per_node == 4 and launcher.nodes == 2 and launcher.timeout_min > 0
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy) == (4, 2, "ddp")
    assert instantiate(launcher).__class__.__name__ == "SlurmLauncher"


def test_parallel_launcher_runs_jobs_in_worker_processes():
    # Running a grid with it takes 20-30 s on 2 busy cores (worker start-up): too long for CI here.
    launcher = compose_train("hydra/launcher=parallel").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2 and launcher.prefer == "processes"


def test_trainer_configs_instantiate_on_cpu():
    import pytorch_lightning as pl

    for name in ("default", "cpu", "gpu", "ddp"):
        cfg = compose_train(f"trainer={name}", "trainer.accelerator=cpu", "trainer.devices=1")
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert isinstance(trainer, pl.Trainer) and trainer.precision == "32-true"  # bf16 is for GPUs


def test_summary_keeps_failed_and_unfinished_jobs(tmp_path):
    for job, status in [(0, "completed"), (1, "failed")]:
        folder = tmp_path / f"{job}-text-lstm"
        folder.mkdir()
        record = {"job": job, "status": status, "overrides": [f"optim.lr={job + 1}e-3", "model=lstm"]}
        if status == "failed":
            record["error"] = "TrainingError: out of memory"
        (folder / "job.json").write_text(json.dumps(record))
    (tmp_path / "0-text-lstm" / "result.json").write_text(json.dumps(
        {"val_bpc": 2.5, "steps": 10, "train_seconds": 3.0, "export": "ck/text-lstm"}))
    (tmp_path / "2-text-lstm" / ".hydra").mkdir(parents=True)  # started, never ended (killed)
    (tmp_path / "2-text-lstm" / ".hydra" / "overrides.yaml").write_text("- optim.lr=3e-3\n- model=lstm\n")
    rows = write_summary(tmp_path)
    assert [(r["job"], r["status"], r["config"]) for r in rows] == [
        (0, "completed", "optim.lr=1e-3"), (1, "failed", "optim.lr=2e-3"), (2, "running", "optim.lr=3e-3")]
    table = (tmp_path / "summary.md").read_text()
    assert "1 failed" in table and "failed: TrainingError: out of memory" in table and "Best val bpc 2.5000" in table
    assert collect_rows(tmp_path) == rows


def test_export_names_are_claimed_once_per_sweep(tmp_path):
    assert claim_export_name(tmp_path, "text-lstm", 0) == "text-lstm"
    assert claim_export_name(tmp_path, "text-lstm", 1) == "text-lstm-1"
    assert claim_export_name(tmp_path, "text-lstm", 0) == "text-lstm"  # a re-run of job 0 keeps its name
    assert claim_export_name(tmp_path, "text-gru", 2) == "text-gru"
