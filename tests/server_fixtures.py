"""Fixtures of the server tests: a checkpoints folder and a real server over it (a pytest plugin that
conftest.py registers, so test files use the fixtures without importing them).

``server_exports`` and ``live`` hold the tiny *trained* exports of conftest.py.  For a quick edit-test
loop, ``TEXTGEN_SERVER_TEST_EXPORTS=<folder>`` reuses exports trained earlier (a folder holding
``tiny-shakespeare`` and ``tiny-tang``) instead of training them.

The server modules are imported inside the fixtures: test files that use none of them do not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

MODELS = ("tiny-shakespeare", "tiny-tang")
"""The trained exports of ``server_exports`` (conftest.py trains them)."""
SERVER_CONFIG = {
    "batching": {"max_batch_size": 32, "max_wait_ms": 20, "queue_length": 16},
    "limits": {"max_body_bytes": 4096, "max_prompt_chars": 512, "max_new_chars": 20000},
}
"""The test servers' settings: small limits, so that limit errors are cheap to reach."""


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


@pytest.fixture(scope="module")
def live(server_exports) -> Iterator:
    """A real server over the tiny trained exports, with the small limits of ``SERVER_CONFIG``."""
    from live_server import LiveServer

    server = LiveServer({"checkpoints": server_exports, **SERVER_CONFIG})
    yield server
    server.close()
