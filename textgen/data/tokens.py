"""Token ids of a corpus: tokenized in one streaming pass, written once, read as memory maps.

:func:`tokenize_corpus` reads a corpus lazily (:func:`textgen.data.corpus.open_corpus`), trains
the character tokenizer on a bounded random sample of the train lines (or takes a given one, e.g.
a fine-tuned export's), and encodes the text in chunks on a pool of worker processes (one per
core) with a progress bar.  Ids are ``uint16`` when the vocabulary fits, else ``uint32``.

Corpora of at least ``memmap_min_mb`` on disk are written to ``<cache_dir>/tokens/<name>-<key>/``::

    tokenizer.model   the tokenizer the ids belong to
    train.bin         train ids, raw little-endian uint16/uint32
    val.bin           val ids
    meta.json         format, tokenizer sha256, source fingerprint, dtype, and per split:
                      tokens, characters, characters outside the vocabulary (byte fallback)

and read back as ``numpy.memmap``: a re-run with the same files, split and tokenizer reuses them,
and neither tokenizing nor training holds the corpus in memory.  Smaller corpora take the same
path into memory arrays.  Either way the ids are exactly ``tokenizer.encode(train_text)``.

``python -m textgen.data.tokens PATH [--cache-dir DIR]`` tokenizes a local corpus ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textgen.atomic import atomic_directory
from textgen.data.corpus import CHUNK_CHARS, CorpusConfig, CorpusError, CorpusReader, open_corpus
from textgen.tokenizer import _MAX_SENTENCE_BYTES, NEWLINE, UNK_ID, CharTokenizer, TokenizerError, available_cores

FORMAT, VERSION = "textgen-tokens", 1
META, TOKENIZER, PARTS = "meta.json", "tokenizer.model", ("train", "val")
TOKENS_SUBDIR = "tokens"
MAX_WORKERS = 8


@dataclass
class TokenizedCorpus:
    """A corpus as token ids (memory maps or arrays) with the tokenizer they belong to."""

    name: str
    origin: str
    tokenizer: CharTokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    stats: dict[str, dict[str, int]]
    """Per split: ``tokens``, ``chars``, ``byte_fallback`` (characters encoded as bytes)."""
    cache: Path | None
    """The cache folder the ids are mapped from; None when they were tokenized in memory."""
    reused: bool
    """True when the ids came from an earlier run's cache."""
    seconds: float

    @property
    def train_chars(self) -> int:
        return self.stats["train"]["chars"]

    @property
    def val_chars(self) -> int:
        return self.stats["val"]["chars"]


def ids_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits, else ``uint32``."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def absent_pieces(ids: np.ndarray, vocab_size: int, chunk: int = 1 << 24) -> list[int]:
    """The token ids below ``vocab_size`` that never occur in ``ids``, read ``chunk`` ids at a time so
    that a memory-mapped corpus is never loaded whole."""
    present = np.zeros(vocab_size, dtype=bool)
    for start in range(0, len(ids), chunk):
        present |= np.bincount(np.asarray(ids[start:start + chunk], dtype=np.int64), minlength=vocab_size) > 0
    return np.flatnonzero(~present).tolist()


def tokenizer_sha256(tokenizer: CharTokenizer) -> str:
    return hashlib.sha256(tokenizer.model_proto).hexdigest()


# --------------------------------------------------------------------------- the tokenizer
def train_lines(reader: CorpusReader) -> Iterator[str]:
    """The train split's lines (``text.split("\\n")``), streamed.

    A line longer than the tokenizer's sentence limit is handed over in the same pieces the
    tokenizer would cut it into, so one line never has to fit in memory.
    """
    return itertools.chain.from_iterable(train_line_batches(reader))


def train_line_batches(reader: CorpusReader) -> Iterator[list[str]]:
    """:func:`train_lines` in lists, a piece of the corpus at a time (no Python step per line)."""
    pending = ""
    for part, piece in reader.parts():
        if part != "train":
            break
        lines = (pending + piece).split(NEWLINE)
        pending = lines.pop()
        yield lines
        cut = _MAX_SENTENCE_BYTES // 4
        while len(pending) > _MAX_SENTENCE_BYTES:  # more characters than bytes allowed: too long for sure
            yield [pending[:cut]]
            pending = pending[cut:]
    yield [pending]


def train_tokenizer(reader: CorpusReader, input_sentence_size: int | None, seed: int = 0,
                    threads: int | None = None) -> CharTokenizer:
    """A tokenizer trained on at most ``input_sentence_size`` random train lines of ``reader``, by
    ``threads`` SentencePiece threads (None: every core).

    With no more lines than that (every shipped corpus), it is exactly
    ``CharTokenizer.train_on_text(train_text, threads=threads)``.
    """
    return CharTokenizer.train_batches(train_line_batches(reader), max_sentences=input_sentence_size, seed=seed,
                                       threads=threads)


# --------------------------------------------------------------------------- encoding
_WORKER: dict[str, Any] = {}


def _worker_init(proto: bytes) -> None:
    tokenizer = CharTokenizer(proto)
    fallback = np.array([v >= 0 and c > 0 for v, c in zip(tokenizer.byte_values, tokenizer.chars_per_token)])
    _WORKER.update(tokenizer=tokenizer, fallback=fallback, dtype=ids_dtype(tokenizer.vocab_size))


def _encode_chunk(text: str) -> tuple[bytes, int, int, bool]:
    """Ids of one chunk as raw bytes, its characters, how many fell back to bytes, and whether it
    has more than whitespace."""
    tokenizer: CharTokenizer = _WORKER["tokenizer"]
    ids = tokenizer.encode_array(text, dtype=_WORKER["dtype"])  # rejects U+2581, which cannot round-trip
    if (ids == UNK_ID).any():
        raise TokenizerError("the tokenizer produced <unk> ids: it was not trained with byte fallback")
    return ids.tobytes(), len(text), int(np.count_nonzero(_WORKER["fallback"][ids])), not text.isspace()


def _chunks(reader: CorpusReader) -> Iterator[tuple[str, str]]:
    """``(part, text)`` in pieces of about ``CHUNK_CHARS``, never mixing train and val."""
    buffer: list[str] = []
    size, current = 0, "train"
    for part, piece in reader.parts():
        if part != current or size >= CHUNK_CHARS:
            if buffer:
                yield current, "".join(buffer)
            buffer, size, current = [], 0, part
        if piece:
            buffer.append(piece)
            size += len(piece)
    if buffer:
        yield current, "".join(buffer)


def default_workers() -> int:
    """Encoding processes: one per core, at most ``MAX_WORKERS``."""
    return max(1, min(available_cores(), MAX_WORKERS))


def _encoded(reader: CorpusReader, tokenizer: CharTokenizer, workers: int) -> Iterator[tuple]:
    """``(part, id bytes, chars, byte_fallback, nonblank)`` per chunk, in order; at most a few chunks in flight."""
    proto = tokenizer.model_proto
    if workers <= 1 or reader.size_bytes < 4 * CHUNK_CHARS:
        _worker_init(proto)
        for part, text in _chunks(reader):
            yield (part, *_encode_chunk(text))
        return
    # fork: the workers need only the tokenizer, and start without re-importing the caller.
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_worker_init, initargs=(proto,)) as pool:
        pending: deque = deque()
        for part, text in _chunks(reader):
            pending.append((part, pool.apply_async(_encode_chunk, (text,))))
            if len(pending) >= 2 * workers:
                part_done, result = pending.popleft()
                yield (part_done, *result.get())
        while pending:
            part_done, result = pending.popleft()
            yield (part_done, *result.get())


def _encode_into(reader: CorpusReader, tokenizer: CharTokenizer, sinks: dict[str, Any], workers: int,
                 progress: bool) -> dict[str, dict[str, int]]:
    from tqdm import tqdm

    stats = {part: {"tokens": 0, "chars": 0, "byte_fallback": 0} for part in PARTS}
    nonblank = dict.fromkeys(PARTS, False)
    itemsize = ids_dtype(tokenizer.vocab_size).itemsize
    with tqdm(total=reader.chars, unit="char", unit_scale=True, desc=f"tokenize {reader.name}",
              disable=not progress, file=sys.stderr, mininterval=1.0) as bar:
        for part, data, chars, fallback, has_text in _encoded(reader, tokenizer, workers):
            sinks[part].write(data)
            entry = stats[part]
            entry["tokens"] += len(data) // itemsize
            entry["chars"] += chars
            entry["byte_fallback"] += fallback
            nonblank[part] = nonblank[part] or has_text
            bar.update(chars)
    for part in PARTS:
        if not nonblank[part]:
            reader.empty_split(part)
    return stats


class _Memory:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)


# --------------------------------------------------------------------------- the cache
def cache_key(reader: CorpusReader, tokenizer: CharTokenizer | None, input_sentence_size: int | None) -> str:
    """What the ids depend on: the source files and split, and the tokenizer (given, or how trained)."""
    spec: Any = (tokenizer_sha256(tokenizer) if tokenizer is not None
                 else {"train_sample": input_sentence_size, "seed": 0})
    blob = json.dumps({"version": VERSION, "source": reader.fingerprint_hash(), "tokenizer": spec}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _open_cached(folder: Path) -> tuple[CharTokenizer, dict[str, np.ndarray], dict] | None:
    """The tokenizer, memory maps and meta of a complete cache folder, or None."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            return None
        tokenizer = CharTokenizer.load(folder / TOKENIZER)
        if tokenizer_sha256(tokenizer) != meta["tokenizer_sha256"]:
            return None
        dtype = np.dtype(meta["dtype"])
        ids = {}
        for part in PARTS:
            path = folder / f"{part}.bin"
            if path.stat().st_size != meta[part]["tokens"] * dtype.itemsize:
                return None
            ids[part] = np.memmap(path, dtype=dtype, mode="r")
        return tokenizer, ids, meta
    except (OSError, ValueError, KeyError, TypeError, TokenizerError):
        return None


def tokenize_corpus(
    config: CorpusConfig | Mapping[str, Any],
    tokenizer: CharTokenizer | None = None,
    *,
    progress: bool = True,
    workers: int | None = None,
    memmap: bool | None = None,
) -> TokenizedCorpus:
    """Token ids of a corpus' train and val splits, with the tokenizer (trained here unless given).

    ``memmap`` None: memory maps in the cache when the corpus is at least ``memmap_min_mb`` on disk.
    """
    if not isinstance(config, CorpusConfig):
        config = CorpusConfig.from_mapping(config)
    started = time.perf_counter()
    reader = open_corpus(config)
    if memmap is None:
        memmap = reader.size_bytes >= config.memmap_min_mb * (1 << 20)
    workers = default_workers() if workers is None else workers
    sample = config.input_sentence_size
    if not memmap:
        if tokenizer is None:
            tokenizer = train_tokenizer(reader, sample, threads=config.tokenizer_threads)
        sinks = {part: _Memory() for part in PARTS}
        stats = _encode_into(reader, tokenizer, sinks, workers, progress)
        dtype = ids_dtype(tokenizer.vocab_size)
        ids = {part: np.frombuffer(b"".join(sinks[part].parts), dtype=dtype) for part in PARTS}
        return TokenizedCorpus(reader.name, reader.origin, tokenizer, ids["train"], ids["val"], stats,
                               cache=None, reused=False, seconds=time.perf_counter() - started)

    folder = Path(os.path.expanduser(config.cache_dir)) / TOKENS_SUBDIR / f"{reader.name}-{cache_key(reader, tokenizer, sample)}"
    cached = _open_cached(folder)
    if cached is None:
        if tokenizer is None:
            tokenizer = train_tokenizer(reader, sample, threads=config.tokenizer_threads)
        with atomic_directory(folder) as staging:
            with open(staging / "train.bin", "wb") as train, open(staging / "val.bin", "wb") as val:
                stats = _encode_into(reader, tokenizer, {"train": train, "val": val}, workers, progress)
            tokenizer.save(staging / TOKENIZER)
            meta = {
                "format": FORMAT, "version": VERSION, "corpus": reader.name, "origin": reader.origin,
                "tokenizer_sha256": tokenizer_sha256(tokenizer), "vocab_size": tokenizer.vocab_size,
                "dtype": ids_dtype(tokenizer.vocab_size).name, "source": reader.fingerprint(),
                "input_sentence_size": sample, **stats,
                "seconds": round(time.perf_counter() - started, 2),
            }
            (staging / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        cached = _open_cached(folder)
        if cached is None:
            raise CorpusError(f"{folder}: the token cache just written cannot be read back")
        reused = False
    else:
        reused = True
    tokenizer, ids, meta = cached
    stats = {part: {k: int(meta[part][k]) for k in ("tokens", "chars", "byte_fallback")} for part in PARTS}
    return TokenizedCorpus(reader.name, reader.origin, tokenizer, ids["train"], ids["val"], stats,
                           cache=folder, reused=reused, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """``python -m textgen.data.tokens PATH``: tokenize a local corpus into the token cache."""
    parser = argparse.ArgumentParser(prog="python -m textgen.data.tokens", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a UTF-8 file (.gz/.bz2/.xz too) or a folder of files")
    parser.add_argument("--name", default="text", help="corpus name (default: text)")
    parser.add_argument("--cache-dir", default=os.environ.get("TEXTGEN_CACHE_DIR", "~/.cache/textgen"))
    parser.add_argument("--split", default="auto", choices=["auto", "documents", "tail"])
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--document-separator", default="\n\n")
    parser.add_argument("--input-sentence-size", type=int, default=CorpusConfig.input_sentence_size)
    parser.add_argument("--workers", type=int, default=None, help="encoding processes (default: one per core)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = CorpusConfig(name=args.name, path=args.path, cache_dir=args.cache_dir, split=args.split,
                          val_fraction=args.val_fraction, document_separator=args.document_separator,
                          input_sentence_size=args.input_sentence_size)
    try:
        corpus = tokenize_corpus(config, progress=not args.quiet, workers=args.workers, memmap=True)
    except (CorpusError, TokenizerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"cache": str(corpus.cache), "reused": corpus.reused, "seconds": round(corpus.seconds, 2),
                      "vocab_size": corpus.tokenizer.vocab_size, **corpus.stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
