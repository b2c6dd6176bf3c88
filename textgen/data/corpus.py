"""Resolve a corpus config (``conf/data/*.yaml``) into its train and validation text.

Registered corpora (``shakespeare``, ``tang``, ``stacks``) are read, in this order, from the ready
files under ``data_dir`` (``TEXTGEN_DATA_DIR``), from the download cache, or downloaded from their
pinned public source and converted (see :mod:`textgen.data.prepare`).  The ``text`` corpus is any
local UTF-8 file or folder of files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_SUFFIXES = (".txt", ".tex", ".md")


class CorpusError(ValueError):
    """A corpus that is missing, empty or too small, with the setting to fix named."""


@dataclass
class CorpusConfig:
    """Where a corpus comes from and how it is split (the fields of ``conf/data/*.yaml``)."""

    name: str
    """Short name, used in run and export names."""
    source: str | None = None
    """Registered public source to download (``shakespeare``, ``tang``, ``stacks``), or None."""
    path: str | None = None
    """For local corpora: a UTF-8 file or a folder of files."""
    ready: dict[str, str] = field(default_factory=dict)
    """Ready files relative to ``data_dir``: ``{train, val}`` splits, or ``{raw}`` to split here."""
    data_dir: str | None = None
    """Folder of ready corpora (``TEXTGEN_DATA_DIR``)."""
    cache_dir: str = "~/.cache/textgen"
    """Where downloads and converted corpora are kept."""
    mirror: str | None = None
    """Base URL replacing the public host when downloading (``TEXTGEN_MIRROR``)."""
    split: str = "auto"
    """Local corpora: ``documents`` (val = the last documents), ``tail`` (val = the last
    characters) or ``auto`` (documents when there are several, else tail)."""
    val_fraction: float = 0.1
    """Share of the local corpus held out for validation."""
    document_separator: str = "\n\n"
    """What separates documents inside one local file."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CorpusConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Corpus:
    """The text of a corpus, split for training."""

    name: str
    train: str
    val: str
    origin: str
    """Where the text was read from (for logs and ``metrics.json``)."""


def load_corpus(config: CorpusConfig | Mapping[str, Any]) -> Corpus:
    """Read (downloading and converting if needed) the train/val text of a corpus."""
    if not isinstance(config, CorpusConfig):
        config = CorpusConfig.from_mapping(config)
    if config.source is not None:
        corpus = _load_registered(config)
    elif config.path:
        corpus = _load_local(config)
    else:
        raise CorpusError(f"corpus {config.name!r}: set data.path to a UTF-8 file or folder")
    for split in ("train", "val"):
        if not getattr(corpus, split).strip():
            raise CorpusError(f"corpus {config.name!r} ({corpus.origin}): the {split} split is empty")
    return corpus


def _read(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error


def _load_registered(config: CorpusConfig) -> Corpus:
    data_dir = config.data_dir or os.environ.get("TEXTGEN_DATA_DIR")
    if data_dir:
        root = Path(data_dir).expanduser()
        if "train" in config.ready and "val" in config.ready:
            train, val = root / config.ready["train"], root / config.ready["val"]
            if train.is_file() and val.is_file():
                return Corpus(config.name, _read(train), _read(val), origin=str(train.parent))
        if "raw" in config.ready and (root / config.ready["raw"]).is_file():
            from textgen.data.builders import BUILDERS

            raw = root / config.ready["raw"]
            splits = BUILDERS[config.source]([raw])
            return Corpus(config.name, splits.train, splits.val, origin=str(raw))
    from textgen.data.prepare import prepare_corpus

    cache = Path(os.path.expanduser(config.cache_dir))
    train, val = prepare_corpus(config.source, cache, mirror=config.mirror)
    return Corpus(config.name, _read(train), _read(val), origin=str(train.parent))


def _documents(path: Path, separator: str) -> list[str]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CorpusError(f"data.path: folder {path} holds no files")
        return [_read(p) for p in files]
    text = _read(path)
    if not separator:
        return [text]
    docs = [doc for doc in text.split(separator) if doc.strip()]
    return [doc + separator for doc in docs[:-1]] + docs[-1:] if docs else []


def _load_local(config: CorpusConfig) -> Corpus:
    path = Path(config.path).expanduser()
    if not path.exists():
        raise CorpusError(f"data.path: no such file or folder: {path}")
    if not 0.0 < config.val_fraction < 1.0:
        raise CorpusError(f"data.val_fraction must be between 0 and 1, got {config.val_fraction}")
    docs = _documents(path, config.document_separator)
    text = "".join(docs)
    if not text.strip():
        raise CorpusError(f"data.path: {path} is empty")
    split = config.split
    if split == "auto":
        split = "documents" if len(docs) >= 2 else "tail"
    if split == "tail":
        cut = int(len(text) * (1.0 - config.val_fraction))
        return Corpus(config.name, text[:cut], text[cut:], origin=str(path))
    if split != "documents":
        raise CorpusError(f"data.split must be auto, documents or tail, got {split!r}")
    if len(docs) < 2:
        raise CorpusError(f"data.split=documents needs at least two documents in {path}")
    budget = len(text) * config.val_fraction
    val_docs: list[str] = []
    while len(docs) > 1 and (not val_docs or sum(map(len, val_docs)) + len(docs[-1]) <= budget):
        val_docs.insert(0, docs.pop())
    return Corpus(config.name, "".join(docs), "".join(val_docs), origin=str(path))
