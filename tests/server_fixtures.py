"""Fixtures of the server tests: checkpoints folders and real servers over them (a pytest plugin that
conftest.py registers, so test files use the fixtures without importing them).

``server_exports`` and ``live`` hold the tiny *trained* exports of conftest.py, for tests of what a
model writes.  For a quick edit-test loop, ``TEXTGEN_SERVER_TEST_EXPORTS=<folder>`` reuses exports
trained earlier (a folder holding ``tiny-shakespeare`` and ``tiny-tang``) instead of training them.

``contract_exports`` and ``contract`` hold *untrained* exports (random weights, a tokenizer of a few
inline lines) written by :func:`textgen.export.export_model` in a moment, for the tests of the HTTP
contract (statuses, shapes, queueing, draining), which no trained weight changes.

The server modules are imported inside the fixtures: test files that use none of them do not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

MODELS = ("tiny-shakespeare", "tiny-tang")
"""The trained exports of ``server_exports`` (conftest.py trains them)."""
CONTRACT_MODELS = ("untrained-en", "untrained-zh")
"""The untrained exports of ``contract_exports``: English text, and Tang verse (its ，。 and 春夏秋冬)."""
SERVER_CONFIG = {
    "batching": {"max_batch_size": 32, "max_wait_ms": 20, "queue_length": 16},
    "limits": {"max_body_bytes": 4096, "max_prompt_chars": 512, "max_new_chars": 20000},
}
"""The test servers' settings: small limits, so that limit errors are cheap to reach."""
ENGLISH = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
           "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles.\n")
TANG_VERSE = "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\n春夏秋冬月，山水风花雪。\n"


def write_untrained_export(dest: Path, text: str, cell: str) -> Path:
    """An export of a tiny model with random weights (seeded) and a tokenizer trained on ``text``."""
    import torch

    from textgen.export import export_model
    from textgen.models import EncoderConfig, ModelConfig, Seq2SeqLM
    from textgen.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer.train_on_text(text * 3)
    model = Seq2SeqLM(ModelConfig(vocab_size=tokenizer.vocab_size, cell=cell, embedding=16, hidden=32, layers=1,
                                  encoder=EncoderConfig(layers=1, hidden=16)))
    return export_model(dest, model, tokenizer, name=dest.name, corpus="inline", context_chars=16, target_chars=12)


def add_broken_export(folder: Path, like: Path) -> None:
    """``folder/broken``: the files of export ``like`` with weights that are not safetensors."""
    broken = folder / "broken"
    broken.mkdir()
    for item in like.iterdir():
        if item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")


@pytest.fixture(scope="session")
def server_exports(request, tmp_path_factory) -> Path:
    """A checkpoints folder holding the tiny trained exports (symlinks) and one broken export."""
    folder = tmp_path_factory.mktemp("server-checkpoints")
    reuse = os.environ.get("TEXTGEN_SERVER_TEST_EXPORTS")
    for name, fixture in zip(MODELS, ("tiny_shakespeare", "tiny_tang")):
        source = Path(reuse) / name if reuse else request.getfixturevalue(fixture)
        (folder / name).symlink_to(source.resolve(), target_is_directory=True)
    add_broken_export(folder, folder / MODELS[0])
    return folder


@pytest.fixture(scope="session")
def contract_exports(tmp_path_factory) -> Path:
    """A checkpoints folder of two untrained exports (an LSTM on English, a GRU on Tang verse) and a broken one."""
    folder = tmp_path_factory.mktemp("contract-checkpoints")
    english, tang = CONTRACT_MODELS
    write_untrained_export(folder / english, ENGLISH, "lstm")
    write_untrained_export(folder / tang, TANG_VERSE, "gru")
    add_broken_export(folder, folder / english)
    return folder


@pytest.fixture(scope="module")
def live(server_exports) -> Iterator:
    """A real server over the tiny trained exports, with the small limits of ``SERVER_CONFIG``."""
    from live_server import LiveServer

    server = LiveServer({"checkpoints": server_exports, **SERVER_CONFIG})
    yield server
    server.close()


@pytest.fixture(scope="module")
def contract(contract_exports) -> Iterator:
    """A real server over the untrained exports, with the settings of ``live``."""
    from live_server import LiveServer

    server = LiveServer({"checkpoints": contract_exports, **SERVER_CONFIG})
    yield server
    server.close()
