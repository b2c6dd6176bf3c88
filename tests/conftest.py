"""Shared fixtures: corpora from TEXTGEN_DATA_DIR and tiny models trained for real through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from textgen.export import export_model, load_export
from textgen.models import EncoderConfig, ModelConfig, Seq2SeqLM
from textgen.tokenizer import CharTokenizer

pytest_plugins = ["server_fixtures"]  # the server tests' folders and live servers

# One torch/OpenMP thread for the test process and every CLI it starts: the tiny models gain nothing
# from a second thread, and on 2 cores two processes of 2 OpenMP threads each (a CLI training beside
# a live server, DDP's two ranks) spin-wait on each other, which made a 200-step tiny training take
# minutes instead of seconds.  A value already set (by the user) wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# What `auto` measures at load (textgen/runtime_choice.py) is cached per process tree of the suite, not
# in the user's ~/.cache: the CLIs and servers the tests start inherit the folder.
os.environ.setdefault("TEXTGEN_CACHE_DIR", tempfile.mkdtemp(prefix="textgen-test-cache-"))

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TEXTGEN_DATA_DIR", REPO.parent / "shared" / "data"))

# Tiny but real: trains in seconds on 2 cores, enough to learn the corpus' alphabet and layout.
TINY_MODEL = [
    "model.embedding=32", "model.hidden=96", "model.layers=1", "model.encoder.hidden=48",
    "model.dropout=0.0", "data.context_chars=32", "data.target_chars=48", "data.batch_size=32",
    "data.stride=7", "trainer.val_check_interval=100", "trainer.enable_progress_bar=false",
    # A constant learning rate: a cosine decay over a budget this short halves what the model learns.
    "scheduler.warmup_steps=0", "scheduler.min_lr_ratio=1.0", "optim.lr=0.01",
]
TINY_CORPUS_CHARS = {"shakespeare": 100_000, "tang": 120_000, "stacks": 100_000}
TINY_STEPS = 200


def corpus_file(name: str) -> Path:
    """A shared corpus file, or skip when the shared data is not beside the project."""
    path = DATA_DIR / ("shakespeare/input.txt" if name == "shakespeare" else f"{name}/train.txt")
    if not path.is_file():
        pytest.skip(f"shared corpus {path} not found: set TEXTGEN_DATA_DIR")
    return path


def cli(module: str, *args: str, env: dict | None = None, cwd: Path | None = None,
        check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m textgen.<module> args`` like a user would; returns the finished process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", f"textgen.{module}", *args], cwd=cwd or REPO, check=False,
                            env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"textgen.{module} {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def train_tiny(tmp: Path, corpus: str, name: str, *extra: str, steps: int = TINY_STEPS) -> Path:
    """Train a tiny model on the first characters of a shared corpus; returns its export folder."""
    text = corpus_file(corpus).read_text(encoding="utf-8")[: TINY_CORPUS_CHARS[corpus]]
    source = tmp / f"{corpus}.txt"
    source.write_text(text, encoding="utf-8")
    cli("train", "data=text", f"data.path={source}", f"data.name={corpus}", f"export.dir={tmp / 'checkpoints'}",
        f"export.name={name}", f"hydra.run.dir={tmp / 'runs' / name}", f"trainer.max_steps={steps}",
        *TINY_MODEL, *extra)
    return tmp / "checkpoints" / name


@pytest.fixture(scope="session")
def tiny_shakespeare(tmp_path_factory) -> Path:
    """Export folder of a tiny LSTM (with encoder) trained on 100k characters of Shakespeare."""
    return train_tiny(tmp_path_factory.mktemp("tiny-shakespeare"), "shakespeare", "tiny-shakespeare")


@pytest.fixture(scope="session")
def tiny_tang(tmp_path_factory) -> Path:
    """Export folder of a tiny GRU (with encoder) trained on 120k characters of Tang poems."""
    return train_tiny(tmp_path_factory.mktemp("tiny-tang"), "tang", "tiny-tang", "model=gru")


@pytest.fixture(scope="session")
def tiny_stacks(tmp_path_factory) -> Path:
    """Export folder of a tiny LSTM trained on 100k characters of Stacks project LaTeX (with the
    Stacks preamble, so the export carries its LaTeX vocabulary)."""
    preamble = DATA_DIR / "stacks" / "preamble.tex"
    return train_tiny(tmp_path_factory.mktemp("tiny-stacks"), "stacks", "tiny-stacks", f"data.preamble={preamble}")


# The text of the untrained model's tokenizer: English letters and a Tang couplet.
UNTRAINED_TEXT = "the quick brown fox jumps over the lazy dog\n春眠不觉晓，处处闻啼鸟。\n" * 3


@pytest.fixture(scope="session")
def untrained(tmp_path_factory):
    """An untrained model: its uniform-ish choices exercise byte pieces and every code path."""
    torch.manual_seed(0)
    tok = CharTokenizer.train_on_text(UNTRAINED_TEXT)
    model = Seq2SeqLM(ModelConfig(vocab_size=tok.vocab_size, embedding=16, hidden=32, layers=1,
                                  encoder=EncoderConfig(layers=1, hidden=16)))
    path = tmp_path_factory.mktemp("export") / "untrained"
    export_model(path, model, tok, name="untrained", corpus="test", context_chars=16, target_chars=12)
    return load_export(path)


@pytest.fixture(scope="session")
def tang(tiny_tang):
    """The tiny Tang model, loaded."""
    return load_export(tiny_tang)
