"""The production command: gunicorn with ``server/gunicorn_conf.py``, and its graceful shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from live_server import parse_sse
from server_fixtures import MODELS

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(server_exports, tmp_path):
    port = free_port()
    env = {**os.environ, "TEXTGEN_CHECKPOINTS": str(server_exports), "TEXTGEN_BIND": f"127.0.0.1:{port}",
           "TEXTGEN_DRAIN_TIMEOUT_S": "60", "TEXTGEN_THREADS": "8"}
    with open(tmp_path / "gunicorn.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "server/gunicorn_conf.py",
                                    "server:create_app()"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(url + "/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:  # not listening yet, or still loading the models
                    pass
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
            yield process, url, tmp_path / "gunicorn.log"
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(30)


def test_gunicorn_serves_and_sigterm_finishes_running_streams(gunicorn):
    process, url, log = gunicorn
    body = {"model": MODELS[0], "max_new_chars": 1500, "seed": 2}
    assert requests.post(url + "/v1/generate", json={**body, "max_new_chars": 10}, timeout=60).status_code == 200
    with requests.post(url + "/v1/generate/stream", json=body, stream=True, timeout=60) as running:
        chunks = running.iter_content(None)
        received = next(chunks)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # no new work is accepted while it drains
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/health", timeout=5)
        received += b"".join(chunks)
    events = parse_sse(received.decode())
    assert events[-1] == "[DONE]", log.read_text()
    assert sum(len(e["text"]) for e in events if isinstance(e, dict) and "text" in e) == 1500
    assert process.wait(60) == 0
    assert "Shutting down" in log.read_text()
