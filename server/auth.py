"""API keys: when ``auth.api_keys`` is set, every ``/v1/...`` route needs ``Authorization: Bearer <key>``.

``TEXTGEN_API_KEYS`` (or ``auth.api_keys`` in ``conf/server.yaml``) is a comma-separated list of keys,
or ``@path`` of a file holding one key a line (blank lines and ``#`` comments skipped).  A missing
or unknown key is a 401 in the route's own error shape (so the ``openai`` client raises
``AuthenticationError``).  Keys are compared in constant time (:func:`hmac.compare_digest`, against
every key) and never logged.  ``/health`` and the page stay open; ``/metrics`` needs a key only with
``auth.metrics_need_key``.  With ``auth.requests_per_minute``, a key past that many requests in the
last minute is answered 429 with ``Retry-After`` (each server process counts its own).
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from pathlib import Path

from flask import Flask, current_app, request

from server.error_kinds import ErrorKind
from server.errors import APIError
from server.settings import Auth, ServerSettings

API_PREFIX = "/v1/"
METRICS_PATH = "/metrics"
WINDOW_S = 60.0
"""The window of ``requests_per_minute``."""


def read_keys(spec: str) -> tuple[str, ...]:
    """The keys of ``auth.api_keys``: ``"k1,k2"``, or ``"@path"`` to a file with one key a line."""
    spec = spec.strip()
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ValueError(f"auth.api_keys: cannot read the key file {path}: {error.strerror}") from error
        keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise ValueError(f"auth.api_keys: the key file {path} holds no key")
    else:
        keys = [key.strip() for key in spec.split(",") if key.strip()]
    if any(any(c.isspace() for c in key) for key in keys):
        raise ValueError("auth.api_keys: a key may not contain spaces")
    return tuple(dict.fromkeys(keys))


def needs_key(path: str, settings: ServerSettings) -> bool:
    """Whether a request to ``path`` (a URL path or an OpenAPI path template) needs a key when keys are set."""
    return path.startswith(API_PREFIX) or (path == METRICS_PATH and settings.auth.metrics_need_key)


class ApiKeys:
    """The configured keys and, per key, the times of its requests in the last minute."""

    def __init__(self, auth: Auth) -> None:
        self._keys = tuple(key.encode("utf-8") for key in read_keys(auth.api_keys))
        self.requests_per_minute = auth.requests_per_minute
        self._recent: dict[bytes, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def match(self, presented: str) -> bytes | None:
        """The configured key equal to ``presented``, compared in constant time against every key."""
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for key in self._keys:
            if hmac.compare_digest(key, given):
                found = key
        return found

    def take(self, key: bytes) -> int | None:
        """Count one request of ``key``; None when it is within the limit, else the seconds to wait."""
        if not self.requests_per_minute:
            return None
        now = time.monotonic()
        with self._lock:
            times = self._recent.setdefault(key, deque())
            while times and times[0] <= now - WINDOW_S:
                times.popleft()
            if len(times) >= self.requests_per_minute:
                return max(1, math.ceil(times[0] + WINDOW_S - now))
            times.append(now)
            return None


def check_key() -> None:
    """Before each request: 401 without a configured key where one is needed, 429 past its rate."""
    state = current_app.extensions["textgen"]
    keys: ApiKeys = state.keys
    if not keys.required or not needs_key(request.path, state.settings):
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = keys.match(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if key is None:
        said = "an unknown API key was given" if token.strip() else "no API key was given"
        raise APIError(ErrorKind.UNAUTHORIZED, f"{said}: send `Authorization: Bearer <key>` with a key the server "
                                               "was started with (TEXTGEN_API_KEYS)",
                       headers={"WWW-Authenticate": 'Bearer realm="textgen"'})
    wait_s = keys.take(key)
    if wait_s is not None:
        raise APIError(ErrorKind.KEY_RATE_LIMIT, f"this API key made {keys.requests_per_minute} requests in the "
                                                 f"last minute, the server's limit; retry after {wait_s} s",
                       headers={"Retry-After": str(wait_s)})


def init_app(app: Flask) -> None:
    """Check keys before every request (a no-op when none are set)."""
    app.before_request(check_key)
