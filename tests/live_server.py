"""A real server on a loopback port, for the server tests (their fixtures: ``server_fixtures.py``)."""

from __future__ import annotations

import json
import threading

import requests
from werkzeug.serving import make_server

from server import create_app


class LiveServer:
    """``create_app(config)`` served by werkzeug's threaded server on 127.0.0.1 (a free port)."""

    def __init__(self, config: dict) -> None:
        self.app = create_app({"TESTING": True, **config})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-server", daemon=True)
        self.thread.start()

    @property
    def state(self):
        return self.app.extensions["textgen"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        self.state.registry.close()

    def post(self, path: str, body: object, **kwargs) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=120, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def stream(self, body: dict) -> list[dict | str]:
        """POST to the stream endpoint; the parsed events (``"[DONE]"`` as a string)."""
        with requests.post(self.url + "/v1/generate/stream", json=body, stream=True, timeout=120) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return parse_sse(response.content.decode("utf-8"))

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 when absent)."""
        text = self.get("/metrics").text
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, value = line.rsplit(" ", 1)
            metric, _, raw_labels = head.partition("{")
            if metric != name:
                continue
            found = dict(part.split("=", 1) for part in raw_labels.rstrip("}").split(",") if part)
            if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
                return float(value)
        return 0.0


def parse_sse(text: str) -> list[dict | str]:
    """The events of a Server-Sent Events body (``"[DONE]"`` as a string)."""
    events: list[dict | str] = []
    for block in text.split("\n\n"):
        if not block.startswith("data: "):
            continue
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events
