"""Self-contained model exports: a folder that alone is enough to sample and evaluate.

::

    checkpoints/<name>/
        model.safetensors   weights (no pickled code: safetensors)
        tokenizer.model     the SentencePiece model
        config.json         model architecture + window sizes + provenance (what loading needs)
        training.yaml       the fully resolved config that trained it
        metrics.json        val bpc, steps, characters seen, wall time, machine
        preamble.tex        a LaTeX corpus only: the preamble its text compiles with
        latex.json          a LaTeX corpus only: its LaTeX vocabulary (textgen.latex_export)

Loading needs torch, safetensors and sentencepiece only: never Lightning or Hydra.  A folder is
written through :func:`textgen.atomic.atomic_directory`, so a killed export leaves the previous
export (or nothing), never a half-written one.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from textgen.atomic import atomic_directory
from textgen.cpu_choice import AUTO
from textgen.encoder_runtime import resolve_encoder_runtime, use_encoder_runtime
from textgen.machine import cpu_flags
from textgen.models import ModelConfig, Seq2SeqLM
from textgen.models.fused_step import FusedStepError, resolve_decode_step, use_decode_step
from textgen.quantization import quantize_model, resolve_quantize
from textgen.tokenizer import CharTokenizer, TokenizerError

FORMAT = "textgen-export"
FORMAT_VERSION = 1
WEIGHTS, TOKENIZER, CONFIG, TRAINING, METRICS = (
    "model.safetensors", "tokenizer.model", "config.json", "training.yaml", "metrics.json",
)
REQUIRED = (WEIGHTS, TOKENIZER, CONFIG)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SHIPPED = "shipped"  # metrics.json key marking the models that ship in checkpoints/


class ExportError(ValueError):
    """An export folder that is missing, incomplete or inconsistent; the message says what."""


@dataclass
class ExportInfo:
    """What ``config.json`` says about an export."""

    name: str
    corpus: str
    model: ModelConfig
    context_chars: int
    """Tokens of context the encoder read in training (a character outside the vocabulary is one
    token per UTF-8 byte); the sampler re-reads as many."""
    target_chars: int
    """Tokens the decoder wrote from one context in training; the sampler re-reads its context
    after as many."""
    created: str
    document_separator: str | None = None
    """Set when training contexts stopped at a document's start (``data.document_contexts``): the
    separator between documents, so evaluation reads a text's windows as training did.  None in
    exports trained with contexts that run on across documents (all older ones)."""
    untrained_pieces: list[int] = field(default_factory=list)
    """Token ids that never occur in the training text (byte pieces, mostly): their output weights
    were never a target, so the sampler does not emit them.  Empty in exports older than this field."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "name": self.name, "corpus": self.corpus,
            "created": self.created, "model": self.model.to_dict(),
            "window": {"context_chars": self.context_chars, "target_chars": self.target_chars,
                       "document_separator": self.document_separator},
            "untrained_pieces": self.untrained_pieces,
        }


@dataclass
class LoadedModel:
    """A model ready to sample: weights in eval mode, its tokenizer, and what the export says."""

    model: Seq2SeqLM
    tokenizer: CharTokenizer
    info: ExportInfo
    metrics: dict[str, Any]
    path: Path
    quantize: str = "none"
    """How the weights were loaded: ``none`` (float32) or ``int8`` (:mod:`textgen.quantization`)."""
    encoder_runtime: str = "torch"
    """What runs the context encoder: ``torch`` or ``onnxruntime`` (:mod:`textgen.encoder_runtime`)."""
    decode_step: str = "torch"
    """How a float32 model steps: ``torch`` (its modules) or ``fused`` (:mod:`textgen.models.fused_step`)."""
    runtime_choice: Any = None
    """What ``auto`` measured and chose (:class:`textgen.runtime_choice.RuntimeChoice`); None when no
    option was ``auto``."""

    @property
    def name(self) -> str:
        return self.info.name


def validate_name(name: str) -> str:
    """Export names are plain names, so they can never reach outside the checkpoints folder."""
    if not NAME_PATTERN.match(name or "") or name in {".", ".."}:
        raise ExportError(f"invalid export name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def machine_description() -> dict[str, Any]:
    """Where a run happened, for ``metrics.json``."""
    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "cpus": os.cpu_count(), "processor": platform.processor(),
        "cpu_flags": cpu_flags(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def export_model(
    dest: str | os.PathLike,
    model: Seq2SeqLM,
    tokenizer: CharTokenizer,
    *,
    name: str,
    corpus: str,
    context_chars: int,
    target_chars: int,
    document_separator: str | None = None,
    training_config: str = "",
    metrics: dict[str, Any] | None = None,
    dtype: str = "float32",
    untrained_pieces: list[int] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write an export folder atomically (replacing an older one of the same name).

    ``extra_files`` (file name -> text) are written beside the others: a LaTeX corpus' export
    carries its ``preamble.tex`` and ``latex.json`` (:mod:`textgen.latex_export`).
    """
    validate_name(name)
    if dtype not in DTYPES:
        raise ExportError(f"export dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    info = ExportInfo(
        name=name, corpus=corpus, model=model.config, context_chars=context_chars,
        target_chars=target_chars, document_separator=document_separator, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        untrained_pieces=sorted(int(i) for i in untrained_pieces or []),
    )
    state = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    dest = Path(dest)
    with atomic_directory(dest) as staging:
        save_file(state, str(staging / WEIGHTS), metadata={"format": FORMAT, "dtype": dtype})
        tokenizer.save(staging / TOKENIZER)
        (staging / CONFIG).write_text(json.dumps(info.to_dict(), indent=2, ensure_ascii=False) + "\n")
        (staging / TRAINING).write_text(training_config, encoding="utf-8")
        (staging / METRICS).write_text(json.dumps(metrics or {}, indent=2, ensure_ascii=False) + "\n")
        for file_name, text in (extra_files or {}).items():
            if Path(file_name).name != file_name or file_name in (WEIGHTS, TOKENIZER, CONFIG, TRAINING, METRICS):
                raise ExportError(f"extra export file {file_name!r}: a plain name other than the export's own files")
            (staging / file_name).write_text(text, encoding="utf-8")
    return dest


def read_info(path: str | os.PathLike) -> ExportInfo:
    """Parse and check ``config.json`` of an export folder."""
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such export folder")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise ExportError(f"{path} is not a complete textgen export: missing {', '.join(missing)}")
    try:
        raw = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ExportError(f"{path / CONFIG}: not a textgen export config")
        if raw.get("version") != FORMAT_VERSION:
            raise ExportError(f"{path / CONFIG}: export format version {raw.get('version')} is not supported")
        return ExportInfo(
            name=raw["name"], corpus=raw["corpus"], model=ModelConfig.from_dict(raw["model"]),
            context_chars=int(raw["window"]["context_chars"]), target_chars=int(raw["window"]["target_chars"]),
            document_separator=raw["window"].get("document_separator"), created=raw.get("created", ""),
            untrained_pieces=[int(i) for i in raw.get("untrained_pieces", [])],
        )
    except ExportError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise ExportError(f"{path / CONFIG} is broken: {error!r}") from error


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of an export ({} when absent or unreadable)."""
    try:
        return json.loads((Path(path) / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_shipped(path: str | os.PathLike) -> bool:
    """Whether the export at ``path`` is one of textgen's shipped models (``"shipped": true`` in its
    ``metrics.json``, set by ``benchmarks/ship_checkpoint.py``)."""
    return read_metrics(path).get(SHIPPED) is True


def unshipped_export_name(export_dir: str | os.PathLike, name: str) -> str:
    """``name``, or ``name-1``, ``name-2`` ... when ``<export_dir>/<name>`` is a shipped model: training
    never replaces one (``python -m textgen.train data=tang model=gru`` would otherwise write over
    ``checkpoints/tang-gru``).  Any other export of the name is replaced, as a re-run expects."""
    candidate, number = name, 0
    while is_shipped(Path(export_dir) / candidate):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def load_export(path: str | os.PathLike, device: str | torch.device = "cpu", quantize: str = "none",
                encoder_runtime: str = "torch", decode_step: str = "torch",
                measure: Any = None) -> LoadedModel:
    """Load an export folder into a model in eval mode; raises :class:`ExportError`.

    ``quantize``: ``none`` keeps float32 weights; ``int8`` swaps the decoding step's layers to int8
    (CPU only).  ``encoder_runtime``: ``torch`` runs the context encoder with torch; ``onnxruntime``
    with onnxruntime's fused kernels (CPU only, the same float32 function).  ``decode_step``: ``torch``
    steps through the model's modules; ``fused`` through :class:`textgen.models.fused_step.FusedStep`
    (float32 weights only; the same function in fewer operations).  ``auto`` is the non-CPU value
    off the CPU; on CPU every ``auto`` option is decided by timing the candidates on this machine, once
    per machine and export (:func:`textgen.runtime_choice.load_measured`, with ``measure``, its
    :class:`~textgen.runtime_choice.MeasureSettings`).  A bad value raises a ``ValueError`` naming the
    option (:class:`textgen.quantization.QuantizeError`, :class:`textgen.encoder_runtime.EncoderRuntimeError`,
    :class:`textgen.models.fused_step.FusedStepError`) before anything is read.
    """
    mode = resolve_quantize(quantize, device)
    runtime = resolve_encoder_runtime(encoder_runtime, device)
    step = resolve_decode_step(decode_step, device)
    if mode == "int8" and step == "fused":
        raise FusedStepError("`decode_step=fused` steps float32 weights; it cannot be used with `quantize=int8`")
    path = Path(path)
    info = read_info(path)  # a missing or unreadable export is an ExportError before anything is timed
    if AUTO in (mode, runtime, step):
        from textgen.runtime_choice import load_measured  # it loads through this function, with the candidates

        return load_measured(path, device, quantize=mode, decode_step=step, encoder_runtime=runtime,
                             settings=measure)
    try:
        tokenizer = CharTokenizer.load(path / TOKENIZER)
    except TokenizerError as error:
        raise ExportError(f"{path / TOKENIZER}: {error}") from error
    if tokenizer.vocab_size != info.model.vocab_size:
        raise ExportError(
            f"{path}: tokenizer has {tokenizer.vocab_size} pieces but the model expects {info.model.vocab_size}"
        )
    try:
        state = load_file(str(path / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ExportError(f"{path / WEIGHTS} cannot be read: {error}") from error
    model = Seq2SeqLM(info.model)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as error:
        raise ExportError(f"{path / WEIGHTS} does not match {path / CONFIG}: {error}") from error
    model = quantize_model(model.to(device).eval(), mode, device)
    model = use_decode_step(model, step)
    model = use_encoder_runtime(model, runtime, device)
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, metrics=read_metrics(path), path=path,
                       quantize=mode, encoder_runtime=runtime, decode_step=step)


def checkpoints_dir() -> Path:
    """The folder of exports: ``TEXTGEN_CHECKPOINTS`` or ``./checkpoints``."""
    return Path(os.environ.get("TEXTGEN_CHECKPOINTS", "checkpoints"))


def resolve_export(reference: str | os.PathLike) -> Path:
    """An export folder from a path, or from a plain name looked up in :func:`checkpoints_dir`."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    if NAME_PATTERN.match(str(reference)) and (checkpoints_dir() / str(reference)).is_dir():
        return checkpoints_dir() / str(reference)
    known = sorted(p.name for p in checkpoints_dir().glob("*") if (p / CONFIG).is_file())
    raise ExportError(f"checkpoint {str(reference)!r}: no such export folder (exports in "
                      f"{checkpoints_dir()}: {', '.join(known) or 'none'})")
