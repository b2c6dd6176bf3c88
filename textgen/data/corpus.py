"""Resolve a corpus config (``conf/data/*.yaml``) into its train and validation text.

Registered corpora (``shakespeare``, ``tang``, ``stacks``, ``songshi``, ``songci``) are read, in this order, from the ready
files under ``data_dir`` (``TEXTGEN_DATA_DIR``), from the download cache, or downloaded from their
pinned public source and converted (see :mod:`textgen.data.prepare`).  The ``text`` corpus is any
local UTF-8 file or folder of files, each plain or compressed (``.gz``, ``.bz2``, ``.xz``).

A corpus is read lazily: :func:`open_corpus` gives a :class:`CorpusReader` whose :meth:`parts`
yields the train text, then the val text, in pieces of at most ``CHUNK_CHARS`` characters, so a
corpus larger than memory can be sampled and tokenized (:mod:`textgen.data.tokens`).  A local
corpus is scanned once first (its length and documents), which is all the split needs: the val
part is decided on the fly.  :func:`load_corpus` joins the pieces into strings for small corpora.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import itertools
import json
import lzma
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

COMPRESSED: dict[str, Callable[..., IO[str]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
CHUNK_CHARS = 1 << 20  # characters per piece read


class CorpusError(ValueError):
    """A corpus that is missing, empty or too small, with the setting to fix named."""


@dataclass
class CorpusConfig:
    """Where a corpus comes from and how it is split (the fields of ``conf/data/*.yaml``).

    The other fields of those files are the training's: the windows (``context_chars``,
    ``target_chars``, both counted in tokens, see :mod:`textgen.data.windows`), batch sizes, stride
    and loader workers (:class:`textgen.training.datamodule.WindowDataModule`).
    """

    name: str
    """Short name, used in run and export names."""
    source: str | None = None
    """Registered public source to download (``shakespeare``, ``tang``, ``stacks``, ``songshi``, ``songci``), or None."""
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
    input_sentence_size: int | None = 300_000
    """The tokenizer is trained on at most this many lines of the train split (a uniform random
    sample, SentencePiece's ``input_sentence_size``); None: on every line."""
    tokenizer_threads: int | None = None
    """Threads SentencePiece trains the tokenizer with; None: one per core this process may use.
    The count is recorded in ``tokenizer.model`` and changes nothing else (same pieces, same ids)."""
    memmap_min_mb: float = 64.0
    """Corpora at least this large on disk are tokenized once into ``<cache_dir>/tokens`` and read
    as memory maps; smaller ones are tokenized in memory on every run (the same ids)."""
    preamble: str | None = None
    """For a LaTeX corpus: the preamble its text compiles with (a file; relative paths are looked up
    in ``data_dir`` and beside the downloaded corpus).  Exports then carry it and the corpus'
    LaTeX vocabulary, which the ``latex`` form needs (:mod:`textgen.data.latex_scan`)."""
    bibliography: str | None = None
    """For a LaTeX corpus: its BibTeX file (looked up as ``preamble`` is).  Exports carry it; the
    ``latex`` form's ``\\cite`` completes only to its keys (:mod:`textgen.forms.bibliography`)."""

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


def open_corpus(config: CorpusConfig | Mapping[str, Any]) -> CorpusReader:
    """A lazy reader of the corpus (downloading and converting a registered one if needed)."""
    if not isinstance(config, CorpusConfig):
        config = CorpusConfig.from_mapping(config)
    if config.source is not None:
        return _open_registered(config)
    if config.path:
        return LocalCorpus(config)
    raise CorpusError(f"corpus {config.name!r}: set data.path to a UTF-8 file or folder")


def load_corpus(config: CorpusConfig | Mapping[str, Any]) -> Corpus:
    """Read (downloading and converting if needed) the train/val text of a corpus into memory."""
    reader = open_corpus(config)
    texts: dict[str, list[str]] = {"train": [], "val": []}
    for part, piece in reader.parts():
        texts[part].append(piece)
    corpus = Corpus(reader.name, "".join(texts["train"]), "".join(texts["val"]), origin=reader.origin)
    for split in ("train", "val"):
        if not getattr(corpus, split).strip():
            reader.empty_split(split)
    return corpus


# --------------------------------------------------------------------------- reading files
def open_text(path: Path) -> IO[str]:
    """``path`` as UTF-8 text with newlines untouched, decompressed by its suffix."""
    opener = COMPRESSED.get(path.suffix.lower())
    if opener is not None:
        return opener(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_chunks(path: Path, size: int | None = None) -> Iterator[str]:
    """The text of ``path`` in pieces of at most ``size`` (``CHUNK_CHARS``) characters."""
    size = size or CHUNK_CHARS
    try:
        with open_text(path) as handle:
            while chunk := handle.read(size):
                yield chunk
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path} is not UTF-8 text ({error.reason})") from error
    except (EOFError, OSError, lzma.LZMAError) as error:
        raise CorpusError(f"{path} cannot be read: {error}") from error


def split_documents(chunks: Iterator[str], separator: str) -> Iterator[tuple[str, list[int]]]:
    """The non-blank documents of a text, joined by ``separator``, as ``(piece, starts)``: ``starts``
    are the offsets in ``piece`` where a document begins.

    The pieces concatenate to ``separator.join(d for d in text.split(separator) if d.strip())``,
    read in one pass holding one chunk (and a document's leading whitespace) at a time.  The
    separator before a document belongs to the document before it.  The documents that begin and
    end inside one chunk come as one piece: a corpus of millions of short documents costs no
    Python step per document beyond a list comprehension.
    """
    keep = len(separator) - 1  # a separator may straddle two chunks
    buffer = ""
    blank = ""  # the current document's leading whitespace, while it may still be blank
    is_open = False  # the current document has non-blank text and is being emitted
    emitted = False  # some document was emitted (the next one needs a separator first)

    def add(text: str) -> Iterator[tuple[str, list[int]]]:
        nonlocal blank, is_open
        if is_open:
            if text:
                yield text, []
        elif text and not text.isspace():
            if emitted:
                yield separator, []
            yield blank + text, [0]
            blank, is_open = "", True
        else:
            blank += text

    def end() -> None:
        nonlocal blank, is_open, emitted
        emitted = emitted or is_open
        blank, is_open = "", False

    step = len(separator)
    for chunk in chunks:
        documents = (buffer + chunk).split(separator)
        buffer = documents.pop()  # its end may still grow, or be the start of a separator
        if documents:  # the first one ends the open document; the others are whole documents
            yield from add(documents[0])
            end()
            whole = [d for d in documents[1:] if d and not d.isspace()]
            if whole:
                lead = separator if emitted else ""
                starts = [len(lead)]
                for length in itertools.accumulate(len(d) + step for d in whole[:-1]):
                    starts.append(len(lead) + length)
                yield lead + separator.join(whole), starts
                emitted = True
        if len(buffer) > keep:
            yield from add(buffer[: len(buffer) - keep])
            buffer = buffer[len(buffer) - keep:]
    yield from add(buffer)


def list_files(folder: Path) -> list[Path]:
    """The files of a folder corpus, in sorted path order (hidden files skipped)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CorpusError(f"data.path: folder {folder} holds no files")
    return files


def _file_stats(paths: list[Path]) -> list[list]:
    stats = []
    for path in paths:
        info = path.stat()
        stats.append([str(path.resolve()), info.st_size, info.st_mtime_ns])
    return stats


# --------------------------------------------------------------------------- readers
class CorpusReader:
    """A corpus read lazily: :meth:`parts` yields ``("train", piece)``s, then ``("val", piece)``s."""

    name: str
    origin: str
    """Where the text is read from (for logs and ``metrics.json``)."""
    size_bytes: int = 0
    """Bytes on disk (compressed files count as stored)."""
    chars: int | None = None
    """Characters of train + val when known without reading (after a local corpus' scan)."""

    def parts(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this text: files, sizes, times and the split (a cache key)."""
        raise NotImplementedError

    def fingerprint_hash(self) -> str:
        blob = json.dumps(self.fingerprint(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def empty_split(self, split: str) -> None:
        raise CorpusError(f"corpus {self.name!r} ({self.origin}): the {split} split is empty")


class _Strings(CorpusReader):
    """A corpus built in memory (a registered builder's output); small by construction."""

    def __init__(self, name: str, origin: str, train: str, val: str, fingerprint: dict[str, Any]) -> None:
        self.name, self.origin, self.train, self.val = name, origin, train, val
        self.size_bytes = len(train) + len(val)
        self.chars = len(train) + len(val)
        self._fingerprint = fingerprint

    def parts(self) -> Iterator[tuple[str, str]]:
        for part, text in (("train", self.train), ("val", self.val)):
            for start in range(0, len(text), CHUNK_CHARS):
                yield part, text[start:start + CHUNK_CHARS]

    def fingerprint(self) -> dict[str, Any]:
        return self._fingerprint


class _SplitFiles(CorpusReader):
    """Ready train and val files."""

    def __init__(self, name: str, train: Path, val: Path) -> None:
        self.name, self.origin, self.files = name, str(train.parent), {"train": train, "val": val}
        self.size_bytes = train.stat().st_size + val.stat().st_size

    def parts(self) -> Iterator[tuple[str, str]]:
        for part, path in self.files.items():
            for chunk in read_chunks(path):
                yield part, chunk

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "split-files", "files": _file_stats(list(self.files.values()))}


class LocalCorpus(CorpusReader):
    """A local file or folder, split into train and val as the config says.

    Documents are the files of a folder, or the non-blank blocks of one file separated by
    ``document_separator`` (joined by it again).  ``split=tail``: val is the last ``val_fraction``
    of the characters; ``split=documents``: val is the longest run of last documents within
    ``val_fraction`` of the characters (at least one; the first document always trains).
    """

    def __init__(self, config: CorpusConfig) -> None:
        self.config, self.name = config, config.name
        path = Path(config.path).expanduser()
        self.path, self.origin = path, str(path)
        if not path.exists():
            raise CorpusError(f"data.path: no such file or folder: {path}")
        if not 0.0 < config.val_fraction < 1.0:
            raise CorpusError(f"data.val_fraction must be between 0 and 1, got {config.val_fraction}")
        self.files = list_files(path) if path.is_dir() else [path]
        self.size_bytes = sum(p.stat().st_size for p in self.files)
        self._scanned: tuple[int, int, str] | None = None

    def _scan(self) -> tuple[int, int, str]:
        """One pass over the text: its characters, its documents and the split they give."""
        if self._scanned is not None:
            return self._scanned
        chars = documents = 0
        nonblank = False
        for piece, starts in self._pieces():
            chars += len(piece)
            documents += len(starts)
            nonblank = nonblank or (bool(piece) and not piece.isspace())
        if not nonblank:
            raise CorpusError(f"data.path: {self.path} is empty")
        split = self.config.split
        if split == "auto":
            split = "documents" if documents >= 2 else "tail"
        if split not in ("documents", "tail"):
            raise CorpusError(f"data.split must be auto, documents or tail, got {split!r}")
        if split == "documents" and documents < 2:
            raise CorpusError(f"data.split=documents needs at least two documents in {self.path}")
        self._scanned = chars, documents, split
        return self._scanned

    @property
    def chars(self) -> int:  # type: ignore[override]
        return self._scan()[0]

    def _pieces(self) -> Iterator[tuple[str, list[int]]]:
        """The corpus text as ``(piece, starts)``: the offsets in ``piece`` where a document begins."""
        if self.path.is_dir():
            for path in self.files:
                first = True
                for chunk in read_chunks(path):
                    yield chunk, [0] if first else []
                    first = False
                if first:
                    yield "", [0]  # an empty file is a document too
            return
        separator = self.config.document_separator
        if not separator:
            first = True
            for chunk in read_chunks(self.path):
                yield chunk, [0] if first else []
                first = False
            if first:
                yield "", [0]
            return
        yield from split_documents(read_chunks(self.path), separator)

    def parts(self) -> Iterator[tuple[str, str]]:
        n, documents, split = self._scan()
        position = 0
        if split == "tail":
            cut = int(n * (1.0 - self.config.val_fraction))
            for piece, _ in self._pieces():
                end = position + len(piece)
                if end <= cut:
                    yield "train", piece
                elif position >= cut:
                    yield "val", piece
                else:
                    yield "train", piece[: cut - position]
                    yield "val", piece[cut - position:]
                position = end
            return
        budget = n * self.config.val_fraction
        document, part = -1, "train"
        for piece, starts in self._pieces():
            cut = None
            if part == "train":
                for offset in starts:
                    document += 1
                    # The val documents are the last ones whose total fits the budget (at least one).
                    if document >= 1 and (n - position - offset <= budget or document == documents - 1):
                        cut = offset
                        break
            if cut is None:
                yield part, piece
            else:
                if cut:
                    yield "train", piece[:cut]
                part = "val"
                yield "val", piece[cut:]
            position += len(piece)

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {"kind": "local", "files": _file_stats(self.files), "split": c.split,
                "val_fraction": c.val_fraction, "separator": c.document_separator if not self.path.is_dir() else None}


def _open_registered(config: CorpusConfig) -> CorpusReader:
    data_dir = config.data_dir or os.environ.get("TEXTGEN_DATA_DIR")
    if data_dir:
        root = Path(data_dir).expanduser()
        if "train" in config.ready and "val" in config.ready:
            train, val = root / config.ready["train"], root / config.ready["val"]
            if train.is_file() and val.is_file():
                return _SplitFiles(config.name, train, val)
        if "raw" in config.ready and (root / config.ready["raw"]).is_file():
            from textgen.data.builders import BUILDERS

            raw = root / config.ready["raw"]
            try:
                splits = BUILDERS[config.source]([raw])
            except UnicodeDecodeError as error:
                raise CorpusError(f"{raw} is not UTF-8 text ({error.reason})") from error
            return _Strings(config.name, str(raw), splits.train, splits.val,
                            {"kind": "built", "source": config.source, "files": _file_stats([raw])})
    from textgen.data.download import DownloadError
    from textgen.data.prepare import prepare_corpus

    cache = Path(os.path.expanduser(config.cache_dir))
    try:
        train, val = prepare_corpus(config.source, cache, mirror=config.mirror)
    except DownloadError as error:
        ready = " and ".join(config.ready.values()) or "the ready files"
        raise CorpusError(
            f"corpus {config.name!r} could not be downloaded: {error}. Either set TEXTGEN_DATA_DIR to a "
            f"folder holding {ready}, or TEXTGEN_MIRROR to a mirror of https://raw.githubusercontent.com/"
        ) from error
    return _SplitFiles(config.name, train, val)


def find_preamble(config: CorpusConfig | Mapping[str, Any]) -> Path | None:
    """The preamble file of a LaTeX corpus (``data.preamble``), or None when it names none
    (see :func:`find_corpus_file`)."""
    return find_corpus_file(config, "preamble")


def find_bibliography(config: CorpusConfig | Mapping[str, Any]) -> Path | None:
    """The BibTeX file of a LaTeX corpus (``data.bibliography``), or None when it names none."""
    return find_corpus_file(config, "bibliography")


def find_corpus_file(config: CorpusConfig | Mapping[str, Any], key: str) -> Path | None:
    """The file a LaTeX corpus' ``data.<key>`` names (``preamble``, ``bibliography``), or None.

    A relative name is looked up in ``data_dir`` (``TEXTGEN_DATA_DIR``), then beside the
    downloaded corpus in ``cache_dir`` (where :func:`textgen.data.prepare.prepare_corpus` copies a
    source's extra files), then from the working directory; a name found nowhere is an error.
    """
    if not isinstance(config, CorpusConfig):
        config = CorpusConfig.from_mapping(config)
    value = getattr(config, key)
    if not value:
        return None
    name = Path(value).expanduser()
    candidates = [name]
    if not name.is_absolute():
        data_dir = config.data_dir or os.environ.get("TEXTGEN_DATA_DIR")
        if data_dir:
            candidates.insert(0, Path(data_dir).expanduser() / name)
        if config.source:
            candidates.append(Path(os.path.expanduser(config.cache_dir)) / config.source / name.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CorpusError(f"corpus {config.name!r}: data.{key}={value!r} not found "
                      f"(looked in {', '.join(str(c) for c in candidates)})")
