"""Character tokenizer: SentencePiece ``model_type=char`` with UTF-8 byte fallback.

Every string round-trips: ``decode(encode(text)) == text`` for newlines, runs of spaces, tabs, CJK
and LaTeX backslashes.  A character never seen in training is *not* dropped and does not crash: it
is encoded as its UTF-8 bytes, one ``<0xNN>`` piece per byte (the documented unknown-character
policy).  The sampler follows a text's byte pieces (:attr:`CharTokenizer.byte_values`) with a
:class:`textgen.utf8.Utf8Decoder`, to never write, stop inside, or decode an invalid or incomplete
UTF-8 sequence.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import sentencepiece as spm

from textgen.utf8 import CONTINUATION

UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
NEWLINE = "\n"
SPACE_PIECE = "\u2581"  # SentencePiece writes a space as "▁"
# Far above any corpus' character count: with hard_vocab_limit off, the char trainer keeps exactly
# the characters it saw, so this is an upper bound, not a size.
_VOCAB_CEILING = 1_000_000
# SentencePiece skips training "sentences" longer than this many bytes; lines are cut to fit.
_MAX_SENTENCE_BYTES = 4096


class TokenizerError(ValueError):
    """A text the tokenizer cannot represent, or a broken tokenizer model."""


_BATCH_LINES = 4096  # lines handed on together where lines are streamed in batches


def _line_pieces(lines: Iterable[str]) -> Iterator[str]:
    """Lines without their newline, each longer than ``_MAX_SENTENCE_BYTES`` cut into pieces."""
    for line in lines:
        line = line.rstrip(NEWLINE)
        while len(line.encode("utf-8")) > _MAX_SENTENCE_BYTES:
            cut = _MAX_SENTENCE_BYTES // 4  # at most 4 bytes a character
            yield line[:cut]
            line = line[cut:]
        yield line


def _line_piece_batches(batches: Iterable[list[str]]) -> Iterator[list[str]]:
    """:func:`_line_pieces` of each batch of lines; a batch with no newline and no line that could
    exceed the byte limit (at most 4 bytes a character) is passed on as it is, without a Python
    loop over its lines."""
    short = _MAX_SENTENCE_BYTES // 4
    for batch in batches:
        if batch and (max(map(len, batch)) > short or NEWLINE in "".join(batch)):
            yield list(_line_pieces(batch))
        else:
            yield batch


def batched(items: Iterable[str], size: int = _BATCH_LINES) -> Iterator[list[str]]:
    """``items`` in lists of ``size``."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def reservoir_sample(items: Iterable[str], limit: int, seed: int = 0) -> list[str]:
    """A uniform random sample of at most ``limit`` items, in one pass, holding ``limit`` at most.

    With ``limit`` or fewer items, all of them in their order.  Beyond that, Li's algorithm L: it
    draws how many items to skip, so a corpus of millions of lines costs ``limit * log(n / limit)``
    random numbers, not one per line.
    """
    return reservoir_sample_batches(batched(items), limit, seed)


def reservoir_sample_batches(batches: Iterable[list[str]], limit: int, seed: int = 0) -> list[str]:
    """:func:`reservoir_sample` of the items of ``batches`` (lists), exactly: the same random
    numbers pick the same items, but skipped items cost no Python step each."""
    if limit < 1:
        raise ValueError(f"a sample needs a positive size, got {limit}")
    rng = random.Random(seed)
    reservoir: list[str] = []
    iterator = iter(batches)
    batch: list[str] = []
    index = 0  # the next unread item of ``batch``
    for batch in iterator:
        take = limit - len(reservoir)
        reservoir.extend(batch[:take])
        index = min(take, len(batch))
        if len(reservoir) == limit:
            break
    if len(reservoir) < limit:
        return reservoir
    weight = math.exp(math.log(rng.random() or 1e-300) / limit)
    while True:
        skip = int(math.log(rng.random() or 1e-300) / math.log1p(-weight)) if weight < 1.0 else 0
        index += skip  # the item to take is ``skip`` items on
        while index >= len(batch):
            index -= len(batch)
            batch = next(iterator, None)
            if batch is None:
                return reservoir
        reservoir[rng.randrange(limit)] = batch[index]
        index += 1
        weight *= math.exp(math.log(rng.random() or 1e-300) / limit)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _training_lines(batches: Iterable[list[str]], limit: int | None, seed: int) -> Iterator[str]:
    """Lines for the trainer: long lines cut into pieces; at most ``limit`` by reservoir sampling."""
    pieces = _line_piece_batches(batches)
    if limit is None:
        yield from itertools.chain.from_iterable(pieces)
        return
    yield from reservoir_sample_batches(pieces, limit, seed)


class CharTokenizer:
    """A trained SentencePiece character model plus the tables the sampler needs."""

    def __init__(self, model_proto: bytes) -> None:
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except Exception as error:  # sentencepiece raises bare RuntimeError/OSError
            raise TokenizerError(f"not a SentencePiece model: {error}") from error
        if self._sp.pad_id() != PAD_ID or self._sp.bos_id() != BOS_ID:
            raise TokenizerError("tokenizer was not trained by textgen (unexpected special ids)")
        pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
        self.pieces: list[str] = pieces
        #: For byte pieces ``<0xNN>`` the byte value, else -1.
        self.byte_values: list[int] = [self._byte_value(i) for i in range(self.vocab_size)]
        #: How many characters of text each token stands for (a UTF-8 continuation byte: 0).
        self.chars_per_token: list[int] = [self._chars(i) for i in range(self.vocab_size)]
        self._table: np.ndarray | None = None  # code point -> id, built on first encode_array

    # ----------------------------------------------------------------- construction
    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        max_sentences: int | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> CharTokenizer:
        """Train on an iterable of text lines (newlines are a symbol of their own).

        ``max_sentences`` bounds how many lines are held in memory (a uniform random sample of
        them), for corpora larger than memory.  ``threads``: SentencePiece's trainer threads, None
        for :func:`available_cores`; the count is recorded in the model's trainer spec and changes
        nothing else (the same pieces, scores and ids).
        """
        return cls.train_batches(batched(lines), max_sentences, seed, threads)

    @classmethod
    def train_batches(
        cls,
        batches: Iterable[list[str]],
        max_sentences: int | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> CharTokenizer:
        """:meth:`train` on the lines of ``batches`` (lists of lines): the same tokenizer, faster
        for a corpus of millions of lines."""
        model = _ProtoBuffer()
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_lines(batches, max_sentences, seed),
            model_writer=model,
            model_type="char",
            vocab_size=_VOCAB_CEILING,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            byte_fallback=True,
            user_defined_symbols=[NEWLINE],
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
            max_sentence_length=_MAX_SENTENCE_BYTES * 4,
            minloglevel=2,
            num_threads=available_cores() if threads is None else threads,
        )
        return cls(model.data)

    @classmethod
    def train_on_text(cls, text: str, max_sentences: int | None = None, seed: int = 0,
                      threads: int | None = None) -> CharTokenizer:
        """Train on one string (split into lines)."""
        if not text:
            raise TokenizerError("cannot train a tokenizer on an empty text")
        return cls.train(text.split(NEWLINE), max_sentences=max_sentences, seed=seed, threads=threads)

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Load a ``tokenizer.model`` file."""
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> None:
        """Write the serialized SentencePiece model (not atomic: call inside a staging folder)."""
        Path(path).write_bytes(self._proto)

    @property
    def model_proto(self) -> bytes:
        return self._proto

    # ----------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; raises :class:`TokenizerError` if it would not round-trip."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = text[error.start]
            raise TokenizerError(
                f"the tokenizer cannot represent character U+{ord(bad):04X} at position {error.start} "
                "(a lone surrogate is not a Unicode character)"
            ) from error
        ids = self._sp.encode(text)
        if self._sp.decode(ids) != text:
            bad = next((ch for ch in text if self._sp.decode(self._sp.encode(ch)) != ch), None)
            where = f"character {bad!r} (U+{ord(bad):04X})" if bad else "the text"
            raise TokenizerError(f"the tokenizer cannot represent {where}")
        return ids

    def encode_array(self, text: str, dtype: np.dtype | type = np.int64) -> np.ndarray:
        """``encode(text)`` as an array, by table lookup: one id per character, a character outside
        the vocabulary as its UTF-8 byte pieces, exactly as SentencePiece's char model gives them
        (``tests/test_tokenizer.py`` compares the two), 50-100x faster on a large text.

        Unlike :meth:`encode` it does not decode the ids again to check the round trip; it raises
        :class:`TokenizerError` for the two characters that cannot round-trip, a lone surrogate and
        ``"\u2581"`` (SentencePiece's space symbol).
        """
        table, byte_ids = self._lookup()
        try:
            points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        except UnicodeEncodeError as error:
            raise TokenizerError(
                f"the tokenizer cannot represent character U+{ord(text[error.start]):04X} at position "
                f"{error.start} (a lone surrogate is not a Unicode character)") from error
        ids = table[points]  # (chars,) int32: an id, _UNSEEN, or _REJECTED
        outside = ids < 0
        if not outside.any():
            return ids.astype(dtype)
        if (ids == _REJECTED).any():
            position = int(np.flatnonzero(ids == _REJECTED)[0])
            raise TokenizerError(f"the tokenizer cannot represent character {SPACE_PIECE!r} (U+2581) "
                                 f"at position {position}")
        unseen = points[outside].astype(np.int64)
        lengths = np.ones(len(points), dtype=np.int64)
        lengths[outside] = 1 + (unseen >= 0x80) + (unseen >= 0x800) + (unseen >= 0x10000)  # UTF-8 bytes
        starts = np.cumsum(lengths) - lengths
        out = np.empty(int(lengths.sum()), dtype=np.int64)
        out[starts[~outside]] = ids[~outside]
        unseen_starts = starts[outside]
        for offset, byte in enumerate(_utf8_bytes(unseen)):
            has = byte >= 0
            out[unseen_starts[has] + offset] = byte_ids[byte[has]]
        return out.astype(dtype)

    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """(code point -> id table, byte value -> byte piece id)."""
        if self._table is None:
            table = np.full(_CODE_POINTS, _UNSEEN, dtype=np.int32)
            byte_ids = np.zeros(256, dtype=np.int64)
            for token, piece in enumerate(self.pieces):
                if self._sp.is_byte(token):
                    byte_ids[self.byte_values[token]] = token
                elif not (self._sp.is_control(token) or self._sp.is_unknown(token)):
                    if len(piece) != 1:
                        raise TokenizerError(f"not a character model: piece {token} is {piece!r}")
                    table[ord(" " if piece == SPACE_PIECE else piece)] = token
            if table[ord(SPACE_PIECE)] == _UNSEEN:
                table[ord(SPACE_PIECE)] = _REJECTED
            self._table, self._byte_ids = table, byte_ids
        return self._table, self._byte_ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; byte pieces are joined into UTF-8 characters."""
        return self._sp.decode(list(ids))

    def count_chars(self, ids: Iterable[int]) -> int:
        """Characters of text that ``ids`` stand for."""
        table = self.chars_per_token
        return sum(table[i] for i in ids)

    def byte_fallback_count(self, text: str) -> int:
        """How many characters of ``text`` are outside the vocabulary (encoded as bytes)."""
        return sum(1 for i in self.encode(text) if 0 <= self.byte_values[i] and self.chars_per_token[i])

    # ----------------------------------------------------------------- tables
    def _byte_value(self, token: int) -> int:
        return int(self.pieces[token][3:5], 16) if self._sp.is_byte(token) else -1

    def _chars(self, token: int) -> int:
        if self._sp.is_control(token) or self._sp.is_unknown(token):
            return 0
        if self._sp.is_byte(token):
            low, high = CONTINUATION
            return 0 if low <= self._byte_value(token) <= high else 1
        return len(self.pieces[token])


T = TypeVar("T")


def per_tokenizer(build: Callable[[CharTokenizer], T]) -> Callable[[CharTokenizer], T]:
    """Memoise ``build(tokenizer)``, a table derived from a tokenizer's vocabulary (the sampler's
    piece masks, a form's masks): built on first use, thread-safe, dropped with the tokenizer."""
    cache: weakref.WeakKeyDictionary[CharTokenizer, T] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def tables(tokenizer: CharTokenizer) -> T:
        with lock:
            built = cache.get(tokenizer)
            if built is None:
                built = cache[tokenizer] = build(tokenizer)
            return built

    tables.__doc__ = f"The :class:`{build.__name__}` of ``tokenizer`` (built on first use, then cached)."
    return tables


def add_token_logprob(char_logprobs: list[float], chars: int, logprob: float) -> None:
    """Attribute one token's log-probability to the characters of text it stands for.

    ``chars`` is the token's :attr:`CharTokenizer.chars_per_token`: a piece of one character (or
    the lead byte of a character outside the vocabulary) starts a new entry; a UTF-8 continuation
    byte (0 characters) adds to the character it continues, so a character's log-probability is
    the sum over its byte pieces.  A piece of several characters shares its value among them.
    """
    if chars >= 1:
        char_logprobs.extend([logprob / chars] * chars)
    elif char_logprobs:
        char_logprobs[-1] += logprob


_CODE_POINTS = 0x110000
_UNSEEN, _REJECTED = -1, -2  # table entries: a character outside the vocabulary; U+2581


def _utf8_bytes(points: np.ndarray) -> list[np.ndarray]:
    """The UTF-8 bytes of code points, as four arrays (byte 0..3 of each; -1 past its length)."""
    n = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    lead = np.select([n == 1, n == 2, n == 3], [points, 0xC0 | points >> 6, 0xE0 | points >> 12], 0xF0 | points >> 18)
    out = [lead]
    for k in (1, 2, 3):  # continuation byte k carries bits 6 * (n - 1 - k) and up
        shift = 6 * np.maximum(n - 1 - k, 0)
        out.append(np.where(n > k, 0x80 | (points >> shift) & 0x3F, -1))
    return out


class _ProtoBuffer:
    """A minimal writable sink for ``SentencePieceTrainer.train(model_writer=...)``."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)
