"""The exported models a server offers: found in the checkpoints folder, each loaded once.

A model is loaded on its first request (or at start with ``preload``), then lives in
``app.extensions["textgen"].registry`` with its :class:`~server.batching.Batcher`.  A failed load
is remembered for ``retry_failed_s`` seconds (503 meanwhile; :mod:`server.settings`), then tried again.

The folder is rescanned, never cached for good: ``/v1/models`` lists the exports there at the time
of the request (a new export, e.g. a fine-tuned model, appears without a restart), and a model
whose files changed since it was loaded (exported again under the same name) is loaded again on
its next request while the old weights finish the requests they hold.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from server.batching import Batcher
from server.metrics import Metrics
from server.settings import ServerSettings
from textgen.export import (
    CONFIG,
    SHIPPED,
    WEIGHTS,
    ExportError,
    ExportInfo,
    load_export,
    read_info,
    read_metrics,
    validate_name,
)
from textgen.runtime_choice import MeasureSettings

log = logging.getLogger("server")


class UnknownModel(LookupError):
    """No export of that name."""


class ModelUnavailable(RuntimeError):
    """The export exists but cannot be loaded (or the server is closing)."""


@dataclass
class Listing:
    """What ``/v1/models`` says about one export (read from its files, without loading it)."""

    info: ExportInfo
    params: int
    val_bpc: float | None
    shipped: bool = False
    """One of textgen's shipped models (``"shipped": true`` in its metrics.json), not one trained here."""

    def card(self) -> dict:
        m = self.info.model
        return {
            "name": self.info.name, "corpus": self.info.corpus, "cell": m.cell,
            "encoder": {"layers": m.encoder.layers, "hidden": m.encoder.hidden},
            "params": self.params, "vocab_size": m.vocab_size, "val_bpc": self.val_bpc,
            "shipped": self.shipped, "created": self.info.created,
        }


def count_params(path: Path) -> int:
    """Parameters of an export, from the safetensors header (no weights are read)."""
    total = 0
    with safe_open(str(path / WEIGHTS), framework="pt") as weights:
        for key in weights.keys():
            size = 1
            for dim in weights.get_slice(key).get_shape():
                size *= dim
            total += size
    return total


def export_stamp(path: Path) -> int | None:
    """When an export's files last changed (None if it is not there): a reload is due when it moves."""
    try:
        return max((path / CONFIG).stat().st_mtime_ns, (path / WEIGHTS).stat().st_mtime_ns)
    except OSError:
        return None


class ModelRegistry:
    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.root = Path(settings.checkpoints)
        self.settings = settings
        self.metrics = metrics
        self._lock = threading.Lock()
        self._batchers: dict[str, Batcher] = {}
        self._stamps: dict[str, int | None] = {}  # the files' modification time each batcher was loaded at
        self._failed: dict[str, tuple[float, str, int | None]] = {}  # when, why, files' stamp
        self._listings: dict[tuple[str, float], Listing | None] = {}  # None: unreadable (logged once)
        self._closed = False
        #: What ``auto`` times: a step of one row and of a full batch (:mod:`textgen.runtime_choice`).
        self.measure_settings = MeasureSettings(step_rows=tuple(sorted({1, settings.batching.max_batch_size})))

    def runtime(self, name: str) -> dict | None:
        """How model ``name`` decodes now (None until it is loaded): its settings and what ``auto`` measured."""
        batcher = self._batchers.get(name)
        if batcher is None:
            return None
        loaded = batcher.loaded
        choice = loaded.runtime_choice
        return {"quantize": loaded.quantize, "decode_step": loaded.decode_step, "encoder_runtime": loaded.encoder_runtime,
                "measured": None if choice is None else {
                    "step_ms": choice.step_ms, "encoder_ms": choice.encoder_ms, "cached": choice.cached,
                    "seconds": round(choice.measure_s, 3), "machine": choice.machine}}

    # ----------------------------------------------------------------- discovery
    def listings(self) -> list[Listing]:
        """Every readable export in the checkpoints folder, by name."""
        found = []
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if not (path / CONFIG).is_file():
                continue
            try:
                key = (path.name, max((path / CONFIG).stat().st_mtime, (path / WEIGHTS).stat().st_mtime))
            except OSError:
                continue
            if key not in self._listings:
                try:
                    info = read_info(path)
                    info.name = path.name  # the folder name is what clients ask for
                    metrics = read_metrics(path)
                    self._listings[key] = Listing(info, count_params(path), metrics.get("val_bpc"),
                                                  metrics.get(SHIPPED) is True)
                except (ExportError, SafetensorError, OSError, ValueError) as error:
                    log.warning("not offering export %s: %s", path, error)
                    self._listings[key] = None
            if self._listings[key] is not None:
                found.append(self._listings[key])
        return found

    def available(self) -> int:
        """Models that can be served: listed, and not failed to load recently."""
        now = time.monotonic()
        return sum(1 for listing in self.listings()
                   if not (listing.info.name in self._failed
                           and now - self._failed[listing.info.name][0] < self.settings.retry_failed_s))

    # ----------------------------------------------------------------- loading
    def get(self, name: str) -> Batcher:
        """The batcher of model ``name``, loading it on first use."""
        try:
            validate_name(name)
        except ExportError as error:
            raise UnknownModel(f"unknown model {name!r}") from error
        path = self.root / name
        stamp = export_stamp(path)
        batcher = self._batchers.get(name)
        if batcher is not None and self._stamps.get(name) == stamp:
            return batcher
        if not path.is_dir():
            known = ", ".join(listing.info.name for listing in self.listings()) or "none"
            raise UnknownModel(f"unknown model {name!r} (models: {known})")
        with self._lock:  # one load at a time; a second request for the same model waits for it
            if self._closed:
                raise ModelUnavailable("the server is shutting down")
            if name in self._batchers and self._stamps.get(name) == stamp:
                return self._batchers[name]
            failed = self._failed.get(name)
            if failed and failed[2] == stamp and time.monotonic() - failed[0] < self.settings.retry_failed_s:
                raise ModelUnavailable(f"model {name!r} failed to load: {failed[1]}")
            try:
                started = time.perf_counter()
                loaded = load_export(path, device=self.settings.device, quantize=self.settings.quantize,
                                     encoder_runtime=self.settings.encoder_runtime,
                                     decode_step=self.settings.decode_step, measure=self.measure_settings)
            except (ExportError, OSError, RuntimeError, ValueError) as error:
                log.error("model %s failed to load: %s", name, error)
                self._failed[name] = (time.monotonic(), str(error), stamp)
                self.metrics.model_loads.labels(model=name, outcome="failed").inc()
                raise ModelUnavailable(f"model {name!r} failed to load: {error}") from error
            batcher = Batcher(name, loaded, self.settings.batching, metrics=self.metrics,
                              device=self.settings.device, onednn=self.settings.onednn)
            old = self._batchers.get(name)
            self._batchers[name] = batcher
            self._stamps[name] = stamp
            self._failed.pop(name, None)
            self.metrics.model_loads.labels(model=name, outcome="loaded").inc()
            self.metrics.record_runtime(name, loaded)
            log.info("%s model %s (%s weights, %s step, %s encoder) in %.1f s", "reloaded changed" if old else "loaded",
                     name, "float32" if loaded.quantize == "none" else loaded.quantize, loaded.decode_step,
                     loaded.encoder_runtime, time.perf_counter() - started)
            if old is not None:  # its running and queued requests finish on the old weights
                threading.Thread(target=old.close, name=f"close-{name}", daemon=True).start()
            return batcher

    def preload(self) -> None:
        """Load every listed export now (failures are logged and answered 503 later)."""
        for listing in self.listings():
            try:
                self.get(listing.info.name)
            except (UnknownModel, ModelUnavailable) as error:
                log.error("%s", error)

    def busy(self) -> bool:
        return any(batcher.busy() for batcher in list(self._batchers.values()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.close()
