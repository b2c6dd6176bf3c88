"""Distributed training on CPU: 2 DDP processes (gloo) through the real CLI, and how ranks share data.

Lightning's ``ddp`` starts rank 1 by re-running the command; inside pytest that would re-run the
test session, so the distributed path is tested through ``python -m textgen.train`` subprocesses.
"""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import cli, corpus_file

from textgen.training.datamodule import WindowDataModule

QUICK = ["trainer.enable_progress_bar=false", "model.embedding=16", "model.hidden=32", "model.layers=1",
         "model.encoder.hidden=16", "data.context_chars=16", "data.batch_size=8", "data.stride=11"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
TARGET_CHARS = 23


def windows_of(module: WindowDataModule, rank: int, world: int, train: bool) -> list[int]:
    """The dataset indices that rank ``rank`` of ``world`` reads in one epoch."""
    module.trainer = SimpleNamespace(global_rank=rank, world_size=world)  # what the module reads of a Trainer
    loader = module.train_dataloader() if train else module.val_dataloader()
    if train and world > 1:
        loader.sampler.set_epoch(0)  # as Lightning does every epoch
    return list(loader.sampler)


def test_ranks_train_on_disjoint_windows_and_validate_every_window_once():
    ids = torch.arange(5000) % 50 + 4
    module = WindowDataModule(ids[:4000], ids[4000:4970], 16, 24, batch_size=8, stride=4, seed=7)
    train = [windows_of(module, rank, 2, train=True) for rank in (0, 1)]
    assert not set(train[0]) & set(train[1])  # disjoint
    assert len(module.train_set) % 2 == 1
    assert len(train[0]) == len(train[1]) == len(module.train_set) // 2  # the odd one out is dropped, never repeated
    # Every rank derives its share from the same seeded permutation: a second module agrees.
    again = WindowDataModule(ids[:4000], ids[4000:4970], 16, 24, batch_size=8, stride=4, seed=7)
    assert windows_of(again, 0, 2, train=True) == train[0]
    assert windows_of(WindowDataModule(ids[:4000], ids[4000:4970], 16, 24, 8, stride=4, seed=8), 0, 2, True) != train[0]

    val = [windows_of(module, rank, 2, train=False) for rank in (0, 1)]
    assert len(module.val_set) % 2 == 1  # an odd count: DistributedSampler would repeat one window
    assert sorted(val[0] + val[1]) == list(range(len(module.val_set)))
    assert windows_of(module, 0, 1, train=False) == list(range(len(module.val_set)))


@pytest.mark.slow
def test_two_process_ddp_run_trains_and_exports_one_model(tmp_path):
    from textgen.data.corpus import CorpusConfig, load_corpus

    text = tmp_path / "corpus.txt"
    text.write_text(corpus_file("shakespeare").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    val = load_corpus(CorpusConfig(name="x", path=str(text))).val
    # An odd number of val windows, so that a padded per-rank split would count one twice.
    assert math.ceil(len(val) / TARGET_CHARS) % 2 == 1
    run = tmp_path / "run"
    result = cli("train", *DDP, "data=text", f"data.path={text}", f"export.dir={tmp_path / 'ck'}",
                 "export.name=ddp", f"hydra.run.dir={run}", "trainer.max_steps=20", "trainer.val_check_interval=10",
                 f"data.target_chars={TARGET_CHARS}", "data.val_batch_size=16", *QUICK, cwd=tmp_path)
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["ddp"]
    metrics = json.loads((tmp_path / "ck" / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 20
    assert metrics["chars_seen"] == 20 * 8 * TARGET_CHARS * 2
    # Only rank 0 writes: one log file, one CSV log, the checkpoints.
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log"]
    assert len(list(run.rglob("metrics.csv"))) == 1 and (run / "checkpoints" / "last.ckpt").is_file()
    # The val bpc reduced over 2 ranks is the 1-process score of the same weights on the same text.
    (tmp_path / "val.txt").write_text(val, encoding="utf-8")
    scored = json.loads(cli("evaluate", f"checkpoint={tmp_path / 'ck' / 'ddp'}", f"file={tmp_path / 'val.txt'}",
                            "--json").stdout)
    assert scored["bpc"] == pytest.approx(metrics["val_bpc"], rel=1e-5)


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_job_once_in_its_own_folder(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(corpus_file("shakespeare").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    cli("train", "-m", "model=lstm,gru", *DDP, "data=text", f"data.path={text}", f"export.dir={tmp_path / 'ck'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "data.target_chars=24", "data.val_batch_size=64", *QUICK, cwd=tmp_path)
    # Rank 1 of each job ran that job alone, in the job's folder: no sweep of its own, no re-run jobs.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["text-gru", "text-lstm"]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name[0] != ".") == [
        "0-text-lstm", "1-text-gru"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
    for job in ("0-text-lstm", "1-text-gru"):
        result = json.loads((tmp_path / "sweep" / job / "result.json").read_text())
        assert result["world_size"] == 2 and result["steps"] == 4


def test_large_corpora_are_shared_without_an_in_memory_permutation(monkeypatch):
    import textgen.data.windows as windows
    from textgen.training.datamodule import RankShare

    monkeypatch.setattr(windows, "SHUFFLE_IN_MEMORY_MAX", 100)  # as if the corpus were huge
    ids = torch.arange(5000) % 50 + 4
    module = WindowDataModule(ids[:4000], ids[4000:4970], 16, 24, batch_size=8, stride=4, seed=7)
    shares = []
    for rank in (0, 1):
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        sampler = module.train_dataloader().sampler
        assert isinstance(sampler, RankShare)
        sampler.set_epoch(3)
        shares.append(list(sampler))
    assert not set(shares[0]) & set(shares[1]) and len(shares[0]) == len(shares[1]) == len(module.train_set) // 2
