"""UTF-8 one byte at a time, for the tokenizer's byte-fallback pieces.

A character outside the vocabulary is written as its UTF-8 bytes, one ``<0xNN>`` piece each
(:mod:`textgen.tokenizer`).  :class:`Utf8Decoder` follows one text's bytes: its :attr:`state` says
which bytes may come next, so that a sampler can mask every other byte piece and never write an
invalid or incomplete sequence, and :meth:`Utf8Decoder.feed` returns the character once its last
byte is in.  The bytes are assembled by the standard library's incremental UTF-8 decoder; this
module adds the table of which byte may follow which (RFC 3629, section 4), which the standard
library does not give: its decoder says which bytes it holds, not which may come next, and it
accepts the second byte of a surrogate (``ED A0``) until the third arrives.
"""

from __future__ import annotations

import codecs

BETWEEN = 0
"""The state between characters: a piece that is text, or a byte that starts a character, may come next."""

CONTINUATION = (0x80, 0xBF)
"""The bytes that continue a character (and start none)."""

# The lead bytes whose second byte is narrower than any continuation byte: no overlong forms
# (E0, F0), no surrogates (ED), nothing past U+10FFFF (F4).
_NARROW_SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}

NEXT_BYTE: tuple[tuple[int, int], ...] = (CONTINUATION, *_NARROW_SECOND_BYTE.values())
"""The bytes allowed inside a character, in state ``1 + i``: ``NEXT_BYTE[i]`` (inclusive): any
continuation byte, or the narrower second byte after E0, ED, F0 and F4."""

_SECOND_BYTE_STATE = {lead: 2 + i for i, lead in enumerate(_NARROW_SECOND_BYTE)}  # lead byte -> its second byte's state

STATES = 1 + len(NEXT_BYTE)
"""How many states there are: :data:`BETWEEN` and one per range of :data:`NEXT_BYTE`."""

_Decoder = codecs.getincrementaldecoder("utf-8")


def starts_character(byte: int) -> bool:
    """Whether ``byte`` can begin a character: ASCII, or the lead byte of a 2- to 4-byte sequence."""
    return byte < 0x80 or 0xC2 <= byte <= 0xF4


def allows(state: int, byte: int) -> bool:
    """Whether ``byte`` may come next in ``state`` (a :attr:`Utf8Decoder.state`)."""
    if state == BETWEEN:
        return starts_character(byte)
    low, high = NEXT_BYTE[state - 1]
    return low <= byte <= high


def allowed_bytes() -> list[list[bool]]:
    """The table of :func:`allows`: ``[state][byte]``, :data:`STATES` rows of 256 (to build masks from)."""
    return [[allows(state, byte) for byte in range(256)] for state in range(STATES)]


class Utf8Decoder:
    """The UTF-8 bytes of one text so far: which byte may come next, and each character once whole."""

    def __init__(self) -> None:
        self._decoder = _Decoder()
        self.state = BETWEEN
        """:data:`BETWEEN`, or ``1 + i`` inside a character, whose next byte is in ``NEXT_BYTE[i]``."""

    @property
    def incomplete(self) -> bool:
        """Whether a character has begun and not ended (the text may not stop here)."""
        return self.state != BETWEEN

    def feed(self, byte: int) -> str:
        """Take the next byte; returns the character it completes, or "" inside one.

        Raises :class:`UnicodeDecodeError` for a byte that :func:`allows` rejects in this state.
        """
        if not allows(self.state, byte):
            raise UnicodeDecodeError("utf-8", bytes((byte,)), 0, 1, f"byte 0x{byte:02X} cannot come here")
        text = self._decoder.decode(bytes((byte,)))
        pending = self._decoder.getstate()[0]
        if not pending:
            self.state = BETWEEN
        elif len(pending) == 1:
            self.state = _SECOND_BYTE_STATE.get(pending[0], 1)
        else:
            self.state = 1
        return text
