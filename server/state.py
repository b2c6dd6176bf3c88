"""What one app holds: settings, metrics, the model registry, the API keys, and whether it is draining."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from server.auth import ApiKeys
from server.metrics import Metrics
from server.registry import ModelRegistry
from server.settings import ServerSettings

log = logging.getLogger("server")


@dataclass
class ServerState:
    """``app.extensions["textgen"]``."""

    settings: ServerSettings
    metrics: Metrics
    registry: ModelRegistry
    keys: ApiKeys
    draining: threading.Event = field(default_factory=threading.Event)

    def drain(self, timeout: float | None = None) -> bool:
        """Refuse new generations (503) and wait for running ones; True when all finished in time."""
        self.draining.set()
        timeout = self.settings.shutdown.drain_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.registry.busy():
            if time.monotonic() >= deadline:
                log.warning("drain timed out after %.0f s with requests still running", timeout)
                return False
            time.sleep(0.05)
        return True
