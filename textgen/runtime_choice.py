"""What ``auto`` means on CPU for the load-time options of decoding: the fastest on this machine, timed.

Three options decide how a loaded model decodes, and which is fastest depends on the CPU underneath
(docs/SERVING.md): int8 weights beat float32 on a host with fast int8 dot products and lose badly on
an AVX2-only one; onnxruntime's encoder and the fused step (:mod:`textgen.models.fused_step`) save
dispatch that matters more on some hosts than on others.

* ``quantize``: ``none`` | ``int8`` (:mod:`textgen.quantization`);
* ``decode_step``: ``torch`` | ``fused`` (float32 only);
* ``encoder_runtime``: ``torch`` | ``onnxruntime`` (:mod:`textgen.encoder_runtime`).

When any of them is ``auto`` on CPU, :func:`load_measured` builds each candidate from the export and
times it on this machine: decoding steps at the batch sizes the caller will run
(:attr:`MeasureSettings.step_rows`: one row and a server's full batch), and context reads at the
sizes the encoder sees (:attr:`MeasureSettings.encoder_rows`), the candidates alternating over a few
rounds and each keeping its best time.  A candidate's cost is the geometric mean over the sizes of
its time per row; the cheapest wins.  The decision is cached in the user's cache folder
(``$TEXTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/textgen``, else ``~/.cache/textgen``:
``runtime-choices/<key>.json``), keyed by the CPU (model and kernel flags, :mod:`textgen.machine`),
the library versions, the thread count, the export's checksum and what was asked, so the next load
reads it in milliseconds.  Either way one log line says what was chosen, with the timings.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from textgen.atomic import atomic_write_text
from textgen.cpu_choice import AUTO
from textgen.data.prepare import default_cache_dir
from textgen.encoder_runtime import ENCODER_RUNTIMES, OnnxBidirectionalRNN
from textgen.export import CONFIG, WEIGHTS, LoadedModel, load_export
from textgen.machine import cpu_capability, describe
from textgen.models.fused_step import DECODE_STEPS, can_fuse, use_decode_step
from textgen.quantization import QUANTIZE_MODES, quantize_model
from textgen.sampling import DecodeBatch, SamplingParams, piece_tables

log = logging.getLogger(__name__)

CACHE_SUBDIR = "runtime-choices"
CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class MeasureSettings:
    """How ``auto`` times its candidates (about a second in all for a 6 M-parameter model)."""

    step_rows: tuple[int, ...] = (1, 32)
    """Batch sizes a decoding step is timed at: one row, and the full batch of a server (its
    ``batching.max_batch_size``)."""
    encoder_rows: tuple[int, ...] = (1, 8)
    """Rows a context read is timed at (a server's rows join a few at a time)."""
    seconds_per_timing: float = 0.02
    """Each timing runs as many steps or reads as fit in about this long."""
    max_repeats: int = 30
    """At most this many steps or reads per timing (a row re-reads its context every ``target_chars``
    steps; the timings stay below that)."""
    rounds: int = 3
    """The candidates are timed alternately this many times; each keeps its best."""
    budget_s: float = 3.0
    """On a machine so busy that the timings run long, no round starts after this many seconds of
    measuring (every candidate is timed at every size at least once)."""

    def key(self) -> dict[str, Any]:
        return {"step_rows": list(self.step_rows), "encoder_rows": list(self.encoder_rows)}


@dataclass
class RuntimeChoice:
    """What ``auto`` chose for one export on this machine, and the timings it chose by (ms)."""

    quantize: str
    decode_step: str
    encoder_runtime: str
    step_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """Decoding candidates (``none+torch``, ``none+fused``, ``int8``): ms a step takes at each batch size."""
    encoder_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """Encoder candidates (``torch``, ``onnxruntime``): ms a context read takes at each size."""
    machine: dict[str, Any] = field(default_factory=dict)
    """The machine it was measured on (:func:`textgen.machine.cpu_capability`)."""
    measure_s: float = 0.0
    """Seconds the measurement took."""
    cached: bool = False
    """Read from the cache (this load measured nothing)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RuntimeChoice:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def summary(self) -> str:
        """One line: the choice, and each candidate's timings."""
        def timings(table: dict[str, dict[str, float]], unit: str) -> str:
            return "; ".join(f"{name} " + "/".join(_ms(ms) for ms in sizes.values()) + " ms at "
                             + "/".join(sizes) + f" {unit}" for name, sizes in table.items())
        parts = [f"{decoding_label(self.quantize, self.decode_step)} step, {self.encoder_runtime} encoder"]
        if self.step_ms:
            parts.append(f"steps: {timings(self.step_ms, 'rows')}")
        if self.encoder_ms:
            parts.append(f"context reads: {timings(self.encoder_ms, 'rows')}")
        how = "cached" if self.cached else f"measured in {self.measure_s:.2f} s"
        return f"{', '.join(parts)} ({how} on {describe(self.machine)})" if self.machine else ", ".join(parts)


def _ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def decoding_label(quantize: str, decode_step: str) -> str:
    """A decoding candidate's name: ``int8``, ``none+torch`` or ``none+fused``."""
    return quantize if quantize == "int8" else f"{quantize}+{decode_step}"


def export_checksum(path: Path) -> str:
    """sha256 of an export's weights and config (what decides the timings of its candidates)."""
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        with open(path / name, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def cache_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """Where the decision for ``key`` is kept."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return (cache_dir or default_cache_dir()) / CACHE_SUBDIR / f"{name}.json"


# --------------------------------------------------------------------------- timing
def _seconds_each(run: Callable[[], object], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def _repeats(run: Callable[[], object], settings: MeasureSettings) -> int:
    """How many runs fill a timing (after one warm-up run, which it times)."""
    started = time.perf_counter()
    run()
    once = max(time.perf_counter() - started, 1e-6)
    return max(1, min(settings.max_repeats, int(settings.seconds_per_timing / once)))


def time_alternately(runs: dict[str, dict[int, Callable[[], object]]], settings: MeasureSettings,
                     deadline: float | None = None) -> dict[str, dict[str, float]]:
    """``{candidate: {size: run}}`` -> ``{candidate: {size: best ms}}``: for each size the candidates
    run alternately for ``settings.rounds`` rounds (so a machine's drift hits them alike); past
    ``deadline`` (a ``time.perf_counter()`` value) only the first round of each size runs."""
    best: dict[str, dict[str, float]] = {name: {} for name in runs}
    sizes = sorted({size for by_size in runs.values() for size in by_size})
    for size in sizes:
        timed = {name: by_size[size] for name, by_size in runs.items() if size in by_size}
        repeats = {name: _repeats(run, settings) for name, run in timed.items()}
        for round_ in range(settings.rounds):
            if round_ and deadline is not None and time.perf_counter() > deadline:
                break
            for name, run in timed.items():
                seconds = _seconds_each(run, repeats[name])
                best[name][str(size)] = min(best[name].get(str(size), math.inf), seconds * 1e3)
    return best


def per_row_cost(ms_by_size: dict[str, float]) -> float:
    """A candidate's cost: the geometric mean over the sizes of its ms per row."""
    logs = [math.log(ms / int(size)) for size, ms in ms_by_size.items()]
    return math.exp(sum(logs) / len(logs))


def _stepper(loaded: LoadedModel, rows: int) -> Callable[[], object]:
    """A decoding step of ``rows`` rows, each with a full context of the model's own characters."""
    pieces = [text for text in piece_tables(loaded.tokenizer).text if text]
    prompt = "".join(pieces[i % len(pieces)] for i in range(loaded.info.context_chars))
    batch = DecodeBatch(loaded)
    batch.add([batch.make_row(prompt, SamplingParams(max_new_chars=10**6, seed=i)) for i in range(rows)])
    return batch.step


def _reader(loaded: LoadedModel, encoder: torch.nn.Module, rows: int) -> Callable[[], object]:
    """A context read of ``rows`` full contexts by ``loaded``'s model with ``encoder`` as its encoder."""
    tokens = torch.arange(loaded.info.context_chars)[None, :].repeat(rows, 1) % loaded.tokenizer.vocab_size
    model = loaded.model

    def read() -> object:
        model.encoder = encoder  # the candidates alternate on one model
        with torch.inference_mode():
            return model.start(tokens)
    return read


# --------------------------------------------------------------------------- choosing
def _decoding_candidates(base: LoadedModel, quantize: str, decode_step: str) -> list[tuple[str, str]]:
    """(quantize, decode_step) pairs to time.  int8 weights step their own way (``torch``), so they are
    a candidate unless the fused step was asked for; a model that cannot be fused is not offered it."""
    steps = DECODE_STEPS if decode_step == AUTO else (decode_step,)
    if decode_step == AUTO and not can_fuse(base.model):
        steps = ("torch",)
    candidates = []
    for q in QUANTIZE_MODES if quantize == AUTO else (quantize,):
        if q == "int8":
            if decode_step != "fused":
                candidates.append((q, "torch"))
        else:
            candidates.extend((q, s) for s in steps)
    return candidates


def _with_decoding(base: LoadedModel, quantize: str, decode_step: str, device: str | torch.device) -> LoadedModel:
    model = copy.deepcopy(base.model)
    model = quantize_model(model, quantize, device)
    if quantize == "none":
        model = use_decode_step(model, decode_step)
    return dataclasses.replace(base, model=model, quantize=quantize, decode_step=decode_step)


def measure(base: LoadedModel, quantize: str, decode_step: str, encoder_runtime: str,
            settings: MeasureSettings, device: str | torch.device = "cpu") -> tuple[RuntimeChoice, LoadedModel]:
    """Time the candidates that the ``auto`` options leave open, on float32 ``base`` (loaded with
    ``none``/``torch``/``torch``); returns the choice and the model loaded that way."""
    started = time.perf_counter()
    deadline = started + settings.budget_s
    candidates = _decoding_candidates(base, quantize, decode_step)
    loaded = {decoding_label(q, s): _with_decoding(base, q, s, device) for q, s in candidates}
    step_ms: dict[str, dict[str, float]] = {}
    if len(loaded) > 1:
        step_ms = time_alternately({name: {rows: _stepper(model, rows) for rows in settings.step_rows}
                                    for name, model in loaded.items()}, settings, deadline)
        winner = min(step_ms, key=lambda name: per_row_cost(step_ms[name]))
    else:
        winner = next(iter(loaded))
    chosen = loaded[winner]
    runtimes = ENCODER_RUNTIMES if encoder_runtime == AUTO else (encoder_runtime,)
    encoder_ms: dict[str, dict[str, float]] = {}
    encoder = getattr(chosen.model, "encoder", None)
    if not isinstance(encoder, torch.nn.RNNBase):  # a decoder-only model reads its context with the decoder
        runtime = "torch"
    elif len(runtimes) > 1:
        modules = {"torch": encoder, "onnxruntime": OnnxBidirectionalRNN(encoder)}
        encoder_ms = time_alternately({name: {rows: _reader(chosen, modules[name], rows)
                                              for rows in settings.encoder_rows} for name in runtimes},
                                       settings, deadline)
        runtime = min(encoder_ms, key=lambda name: per_row_cost(encoder_ms[name]))
        chosen.model.encoder = modules[runtime]
    else:
        runtime = runtimes[0]
        if runtime == "onnxruntime":
            chosen.model.encoder = OnnxBidirectionalRNN(encoder)
    choice = RuntimeChoice(quantize=chosen.quantize, decode_step=chosen.decode_step, encoder_runtime=runtime,
                           step_ms=step_ms, encoder_ms=encoder_ms, machine=cpu_capability(),
                           measure_s=time.perf_counter() - started)
    return choice, dataclasses.replace(chosen, encoder_runtime=runtime, runtime_choice=choice)


def load_measured(path: str | Path, device: str | torch.device = "cpu", *, quantize: str = AUTO,
                  decode_step: str = AUTO, encoder_runtime: str = AUTO, settings: MeasureSettings | None = None,
                  cache_dir: Path | None = None) -> LoadedModel:
    """Load an export with every ``auto`` option decided by timing the candidates on this machine, or
    by the decision cached for this machine and export.  The options are already resolved for
    ``device`` (:func:`textgen.cpu_choice.resolve_cpu_choice`): ``auto`` means measure."""
    settings = settings or MeasureSettings()
    path = Path(path)
    capability = cpu_capability()
    key = {"format": CACHE_FORMAT, "machine": capability, "export": export_checksum(path), "device": str(device),
           "asked": [quantize, decode_step, encoder_runtime], **settings.key()}
    where = cache_path(key, cache_dir)
    cached = _read_cached(where)
    if cached is not None:
        loaded = load_export(path, device, quantize=cached.quantize, decode_step=cached.decode_step,
                             encoder_runtime=cached.encoder_runtime)
        cached.cached = True
        log.info("%s: %s", path.name, cached.summary())
        return dataclasses.replace(loaded, runtime_choice=cached)
    base = load_export(path, device, quantize="none", decode_step="torch", encoder_runtime="torch")
    choice, loaded = measure(base, quantize, decode_step, encoder_runtime, settings, device)
    try:
        atomic_write_text(where, json.dumps(choice.to_dict(), indent=1) + "\n")
    except OSError as error:  # a read-only home: the choice still holds for this load
        log.warning("runtime choice not cached at %s: %s", where, error)
    log.info("%s: %s", path.name, choice.summary())
    return loaded


def _read_cached(where: Path) -> RuntimeChoice | None:
    try:
        return RuntimeChoice.from_dict(json.loads(where.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


__all__ = ["MeasureSettings", "RuntimeChoice", "cache_path", "decoding_label", "export_checksum", "load_measured",
           "measure", "per_row_cost", "time_alternately"]
