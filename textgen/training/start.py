"""What a training run starts from: its corpus as token ids, its tokenizer, and, with ``init_from``,
an exported model to fine-tune.

``python -m textgen.train data=text data.path=my_poems.txt init_from=checkpoints/tang-lstm``:

* the export's tokenizer is kept byte for byte: characters of the new text it has never seen go
  through its byte fallback (counted, logged and written to the new ``metrics.json``), so the
  vocabulary and the weights that index it never change;
* the architecture (cell, sizes, layers, encoder, tied weights) is the export's; an override on the
  command line that contradicts it is an error before anything is read or trained.  What may change:
  dropout, the optimizer and schedule, steps, batch and windows (by default the export's windows);
* training starts from the export's weights and exports under a new name (``<source>-<corpus>``
  unless ``export.name`` says otherwise, never the source's own name): the source is only read.

Without ``init_from`` a fresh tokenizer is trained on the corpus (:mod:`textgen.data.tokens`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from textgen.data.corpus import CorpusConfig
from textgen.data.tokens import TokenizedCorpus, tokenize_corpus
from textgen.export import LoadedModel, load_export, resolve_export
from textgen.models import Seq2SeqLM
from textgen.tokenizer import CharTokenizer

log = logging.getLogger("textgen.train")

#: Model fields that shape the weights: an export's values are final.
ARCHITECTURE = ("cell", "embedding", "hidden", "layers", "tie_weights", "layer_norm", "peephole",
                "adaptive_cutoffs", "encoder.layers", "encoder.hidden", "vocab_size")
#: Layout positions (:class:`~textgen.models.ModelConfig`): an export without them may gain them when
#: fine-tuned (their vectors start at zero, so the model starts as the export); one with them keeps its own.
LAYOUT = ("line_positions", "column_positions")
#: Window fields taken from the export unless given on the command line.
WINDOWS = ("context_chars", "target_chars")


class FineTuneError(ValueError):
    """``init_from`` cannot be honoured as configured; the message names the setting."""


@dataclass
class RunStart:
    """The corpus as ids, the tokenizer, and the export training starts from (or None)."""

    corpus: TokenizedCorpus
    tokenizer: CharTokenizer
    source: LoadedModel | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    """Entries for the new export's ``metrics.json``."""

    def load_weights(self, model: Seq2SeqLM) -> None:
        """Copy the source export's weights into ``model`` (nothing without ``init_from``)."""
        if self.source is not None:
            missing, unexpected = model.load_state_dict(self.source.model.state_dict(), strict=False)
            grown = {f"{table}.weight" for table in Seq2SeqLM.LAYOUT_TABLES}
            if unexpected or set(missing) - grown:
                raise FineTuneError(f"init_from: the export's weights do not fit the model: missing {missing}, "
                                    f"unexpected {unexpected}")


def _override_keys(overrides: list[str]) -> dict[str, str]:
    """``{key: value}`` of command-line overrides (``+``/``++`` prefixes dropped; deletions skipped)."""
    keys = {}
    for item in overrides:
        if item.startswith("~") or "=" not in item:
            continue
        key, value = item.split("=", 1)
        keys[key.lstrip("+")] = value
    return keys


def _get(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def architecture_conflicts(export_model: dict[str, Any], cfg_model: dict[str, Any], overrides: list[str]) -> list[str]:
    """Architecture fields set on the command line to values that differ from the export's."""
    keys = _override_keys(overrides)
    explicit = {k[len("model."):] for k in keys if k.startswith("model.")}
    if "model" in keys:  # a model group (model=gru) sets the cell
        explicit.add("cell")
    conflicts = []
    for name in ARCHITECTURE:
        if name in explicit and name != "vocab_size" and _get(cfg_model, name) != _get(export_model, name):
            conflicts.append(f"model.{name}={_get(cfg_model, name)} (the export has {_get(export_model, name)})")
    for name in LAYOUT:
        if name in explicit and export_model.get(name) and cfg_model.get(name) != export_model[name]:
            conflicts.append(f"model.{name}={cfg_model.get(name)} (the export has {export_model[name]})")
    if "vocab_size" in explicit and cfg_model.get("vocab_size") != export_model["vocab_size"]:
        conflicts.append(f"model.vocab_size={cfg_model.get('vocab_size')} (the export's tokenizer has "
                         f"{export_model['vocab_size']} pieces)")
    return conflicts


def _default_name(cfg: DictConfig) -> bool:
    """Whether ``export.name`` is the config's default (``${name}`` of ``<corpus>-<cell>``)."""
    raw_export = OmegaConf.to_container(cfg.export, resolve=False).get("name")
    raw_name = OmegaConf.to_container(cfg, resolve=False).get("name")
    return raw_export == "${name}" and str(raw_name).startswith("${textgen.run_name:")


def apply_init_from(cfg: DictConfig, overrides: list[str]) -> LoadedModel:
    """Load the export ``cfg.init_from`` and make ``cfg`` agree with it (architecture, windows,
    export name); raises :class:`FineTuneError` before any training when it cannot."""
    from textgen.export import ExportError

    try:
        path = resolve_export(str(cfg.init_from))
        source = load_export(path)
    except ExportError as error:
        raise FineTuneError(f"init_from={cfg.init_from}: {error}") from error
    exported = source.info.model.to_dict()
    cfg_model = OmegaConf.to_container(cfg.model, resolve=True)
    conflicts = architecture_conflicts(exported, cfg_model, overrides)
    if conflicts:
        raise FineTuneError(
            f"init_from={cfg.init_from}: the architecture comes from the export; these overrides "
            f"contradict it: {', '.join(conflicts)}. Drop them (dropout, optimizer, steps and windows may change)")
    keys = _override_keys(overrides)
    with open_dict(cfg):
        model = {k: v for k, v in exported.items() if k != "vocab_size"}
        if "model.dropout" in keys:
            model["dropout"] = cfg_model["dropout"]
        for name in LAYOUT:
            if f"model.{name}" in keys:  # grown (the conflicts above refuse changing the export's own)
                model[name] = cfg_model[name]
        cfg.model = OmegaConf.create(model)
        for name in WINDOWS:
            if f"data.{name}" not in keys:
                cfg.data[name] = getattr(source.info, name)
        if _default_name(cfg):
            cfg.export.name = f"{path.resolve().name}-{cfg.data.name}"
    dest = (Path(str(cfg.export.dir)) / str(cfg.export.name)).resolve()
    if str(cfg.export.name) in (path.resolve().name, source.info.name) or dest == path.resolve():
        raise FineTuneError(
            f"export.name={cfg.export.name}: a fine-tuned model is exported under a new name, never over "
            f"its source {path}; pick another export.name")
    return source


def prepare_run(cfg: DictConfig, overrides: list[str] | None = None) -> RunStart:
    """Tokenize the corpus (with the export's tokenizer under ``init_from``) and log what it holds.

    ``overrides`` are the command line's (``HydraConfig``'s task overrides when None).
    """
    source = None
    if cfg.get("init_from"):
        if overrides is None:
            from hydra.core.hydra_config import HydraConfig

            overrides = list(HydraConfig.get().overrides.task)
        source = apply_init_from(cfg, overrides)
        log.info("fine-tuning %s (%s): its tokenizer, architecture and weights; exporting as %s",
                 source.path, source.info.model, cfg.export.name)
    data = CorpusConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))
    tick = time.perf_counter()
    corpus = tokenize_corpus(data, tokenizer=source.tokenizer if source else None,
                             progress=bool(cfg.get("trainer", {}).get("enable_progress_bar", True)))
    tokenizer = corpus.tokenizer
    log.info("corpus %s: %s train + %s val characters from %s",
             corpus.name, f"{corpus.train_chars:,}", f"{corpus.val_chars:,}", corpus.origin)
    if corpus.cache is not None:
        log.info("token ids %s %s (%s)", "reused from" if corpus.reused else "written to", corpus.cache,
                 corpus.train_ids.dtype)
    fallback = {part: corpus.stats[part]["byte_fallback"] for part in ("train", "val")}
    metrics: dict[str, Any] = {}
    if source is None:
        log.info("tokenizer: %d pieces; %d val characters outside it (byte fallback); %.1f s",
                 tokenizer.vocab_size, fallback["val"], time.perf_counter() - tick)
    else:
        total = fallback["train"] + fallback["val"]
        chars = corpus.train_chars + corpus.val_chars
        log.info("tokenizer of %s kept (%d pieces): %d of %s characters of the new text fall back to bytes "
                 "(%d train, %d val); %.1f s", source.info.name, tokenizer.vocab_size, total, f"{chars:,}",
                 fallback["train"], fallback["val"], time.perf_counter() - tick)
        metrics = {"init_from": str(source.path), "init_from_name": source.info.name,
                   "byte_fallback_chars": total, "byte_fallback_chars_train": fallback["train"],
                   "byte_fallback_chars_val": fallback["val"], "text_chars": chars}
    return RunStart(corpus=corpus, tokenizer=tokenizer, source=source, metrics=metrics)
