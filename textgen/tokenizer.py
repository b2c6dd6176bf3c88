"""Character tokenizer: SentencePiece ``model_type=char`` with UTF-8 byte fallback.

Every string round-trips: ``decode(encode(text)) == text`` for newlines, runs of spaces, tabs, CJK
and LaTeX backslashes.  A character never seen in training is *not* dropped and does not crash: it
is encoded as its UTF-8 bytes, one ``<0xNN>`` piece per byte (the documented unknown-character
policy).  The sampler uses :attr:`CharTokenizer.byte_values` to never stop inside, or decode, an
incomplete UTF-8 sequence.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

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


def _line_pieces(lines: Iterable[str]) -> Iterator[str]:
    """Lines without their newline, each longer than ``_MAX_SENTENCE_BYTES`` cut into pieces."""
    for line in lines:
        line = line.rstrip(NEWLINE)
        while len(line.encode("utf-8")) > _MAX_SENTENCE_BYTES:
            cut = _MAX_SENTENCE_BYTES // 4  # at most 4 bytes a character
            yield line[:cut]
            line = line[cut:]
        yield line


def reservoir_sample(items: Iterable[str], limit: int, seed: int = 0) -> list[str]:
    """A uniform random sample of at most ``limit`` items, in one pass, holding ``limit`` at most.

    With ``limit`` or fewer items, all of them in their order.  Beyond that, Li's algorithm L: it
    draws how many items to skip, so a corpus of millions of lines costs ``limit * log(n / limit)``
    random numbers, not one per line.
    """
    if limit < 1:
        raise ValueError(f"a sample needs a positive size, got {limit}")
    rng = random.Random(seed)
    iterator = iter(items)
    reservoir = list(itertools.islice(iterator, limit))
    if len(reservoir) < limit:
        return reservoir
    weight = math.exp(math.log(rng.random() or 1e-300) / limit)
    while True:
        skip = int(math.log(rng.random() or 1e-300) / math.log1p(-weight)) if weight < 1.0 else 0
        item = next(itertools.islice(iterator, skip, None), _END)
        if item is _END:
            return reservoir
        reservoir[rng.randrange(limit)] = item
        weight *= math.exp(math.log(rng.random() or 1e-300) / limit)


_END = object()


def _training_lines(lines: Iterable[str], limit: int | None, seed: int) -> Iterator[str]:
    """Lines for the trainer: long lines cut into pieces; at most ``limit`` by reservoir sampling."""
    if limit is None:
        yield from _line_pieces(lines)
        return
    yield from reservoir_sample(_line_pieces(lines), limit, seed)


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

    # ----------------------------------------------------------------- construction
    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        max_sentences: int | None = None,
        seed: int = 0,
    ) -> CharTokenizer:
        """Train on an iterable of text lines (newlines are a symbol of their own).

        ``max_sentences`` bounds how many lines are held in memory (a uniform random sample of
        them), for corpora larger than memory.
        """
        model = _ProtoBuffer()
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_lines(lines, max_sentences, seed),
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
            num_threads=2,
        )
        return cls(model.data)

    @classmethod
    def train_on_text(cls, text: str, max_sentences: int | None = None, seed: int = 0) -> CharTokenizer:
        """Train on one string (split into lines)."""
        if not text:
            raise TokenizerError("cannot train a tokenizer on an empty text")
        return cls.train(text.split(NEWLINE), max_sentences=max_sentences, seed=seed)

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
            value = self._byte_value(token)
            return 0 if 0x80 <= value <= 0xBF else 1
        return len(self.pieces[token])


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


class _ProtoBuffer:
    """A minimal writable sink for ``SentencePieceTrainer.train(model_writer=...)``."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)
