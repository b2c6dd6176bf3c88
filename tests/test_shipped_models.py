"""The models shipped in checkpoints/: each loads, samples, and scores what its metrics.json says."""

from __future__ import annotations

import pytest
from conftest import DATA_DIR, REPO

from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.evaluation import evaluate_text
from textgen.export import is_shipped, load_export, read_metrics
from textgen.sampling import SamplingParams, generate

TANG = {"name": "tang", "source": "tang", "ready": {"train": "tang/train.txt", "val": "tang/val.txt"}}
STACKS = {"name": "stacks", "source": "stacks", "ready": {"train": "stacks/train.txt", "val": "stacks/val.txt"}}
SONGCI = {"name": "songci", "source": "songci", "ready": {"train": "songci/train.txt", "val": "songci/val.txt"}}
SHIPPED = {  # export folder -> the corpus config it was trained on
    "tang-gru": TANG,
    "tang-lstm": TANG,
    "stacks-gru": STACKS,
    "stacks-lstm": STACKS,
    "ci-gru": SONGCI,
    "shakespeare-gru": {"name": "shakespeare", "source": "shakespeare", "ready": {"raw": "shakespeare/input.txt"}},
}
FIRST_CHARS = 20_000
TOLERANCE = 0.02


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    path = REPO / "checkpoints" / request.param
    assert (path / "model.safetensors").is_file(), f"shipped model {path} is missing"
    return request.param, load_export(path)


def test_shipped_export_is_small_and_records_how_it_was_trained(shipped):
    name, loaded = shipped
    size = sum(f.stat().st_size for f in loaded.path.iterdir())
    assert size <= 20 * 1024 * 1024, f"{name} is {size / 2**20:.1f} MiB"
    metrics = read_metrics(loaded.path)
    assert metrics["command"].startswith("python -m textgen.train")
    assert metrics["steps"] > 0 and 0 < metrics["val_bpc"] < 8
    assert is_shipped(loaded.path)  # so that training never writes over it


def test_shipped_export_samples(shipped):
    name, loaded = shipped
    result = generate(loaded, "", SamplingParams(max_new_chars=60, temperature=0.8, seed=1))[0]
    assert len(result.text) == 60 and "\ufffd" not in result.text


def test_shipped_export_scores_its_recorded_bpc_on_the_val_text(shipped):
    name, loaded = shipped
    if not DATA_DIR.is_dir():
        pytest.skip(f"no shared corpora at {DATA_DIR}")
    corpus = load_corpus(CorpusConfig.from_mapping({**SHIPPED[name], "data_dir": str(DATA_DIR)}))
    metrics = read_metrics(loaded.path)
    score = evaluate_text(loaded, corpus.val[:FIRST_CHARS])
    recorded = metrics["val_first_20000_bpc"]
    assert abs(score.bpc - recorded) <= TOLERANCE * recorded, (score.bpc, recorded)
    # ... and that slice is representative of the whole validation score training recorded.
    assert abs(recorded - metrics["val_bpc"]) <= 0.15 * metrics["val_bpc"]
