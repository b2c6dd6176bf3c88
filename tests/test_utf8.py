"""The incremental UTF-8 decoder of byte-fallback pieces, checked against the standard library."""

from __future__ import annotations

import pytest

from textgen.utf8 import BETWEEN, STATES, Utf8Decoder, allows, starts_character

BOUNDARIES = [0x00, 0x7F, 0x80, 0x7FF, 0x800, 0xFFF, 0x1000, 0xCFFF, 0xD000, 0xD7FF, 0xE000, 0xFFFF,
              0x10000, 0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF]


def _proper_prefixes() -> set[bytes]:
    """The beginnings of the UTF-8 encodings of all characters, short of their last byte (the last
    byte carries a character's low 6 bits, so one character in 64 gives them all)."""
    prefixes = set()
    for point in range(0x80, 0x110000, 0x40):
        if not 0xD800 <= point <= 0xDFFF:
            data = chr(point).encode("utf-8")
            prefixes.update(data[:k] for k in range(1, len(data)))
    return prefixes


PROPER_PREFIXES = _proper_prefixes()


def begins_utf8(data: bytes) -> bool:
    """Whether ``data`` (at most one character) is the beginning of a character's UTF-8 encoding."""
    if data in PROPER_PREFIXES:
        return True
    try:
        return len(data.decode("utf-8")) == 1
    except UnicodeDecodeError:
        return False


def decoder_after(data: bytes) -> Utf8Decoder:
    decoder = Utf8Decoder()
    for byte in data:
        decoder.feed(byte)
    return decoder


def test_allowed_next_bytes_are_exactly_those_that_keep_the_text_valid_utf8() -> None:
    """Every first, second and third byte, and every fourth after the lowest and highest third byte:
    allowed in the decoder's state if and only if some character's encoding begins with the bytes so far."""
    prefixes, longest = [b""], 0
    while prefixes:
        unfinished = []
        for prefix in prefixes:
            state = decoder_after(prefix).state
            for byte in range(256):
                data = prefix + bytes((byte,))
                assert allows(state, byte) == begins_utf8(data), data.hex()
                longest = max(longest, len(data))
                if allows(state, byte) and decoder_after(data).incomplete:
                    unfinished.append(data)
        prefixes = [p for p in unfinished if len(p) < 3 or p[2] in (0x80, 0xBF)]
    assert longest == 4


@pytest.mark.parametrize("point", [*BOUNDARIES, *range(0x21, 0x10FFFF, 0x2F3F)])
def test_a_character_comes_out_with_its_last_byte(point: int) -> None:
    if 0xD800 <= point <= 0xDFFF:
        return  # a surrogate is no character
    char = chr(point)
    data = char.encode("utf-8")
    decoder = Utf8Decoder()
    for i, byte in enumerate(data):
        assert allows(decoder.state, byte)
        text = decoder.feed(byte)
        last = i == len(data) - 1
        assert text == (char if last else "")
        assert decoder.incomplete == (not last)
        assert 0 <= decoder.state < STATES
    assert decoder.state == BETWEEN


def test_text_of_many_characters_is_reassembled() -> None:
    text = "a\n日本語 é€𝄞\U0010FFFF\x00"
    decoder = Utf8Decoder()
    assert "".join(decoder.feed(b) for b in text.encode("utf-8")) == text
    assert not decoder.incomplete


@pytest.mark.parametrize("data", [b"\x80", b"\xc0", b"\xc1", b"\xf5", b"\xff", b"\xe0\x9f", b"\xed\xa0",
                                  b"\xf0\x8f", b"\xf4\x90", b"\xc3\x41", b"\xe2\x82\x41"])
def test_a_byte_that_is_not_allowed_is_refused(data: bytes) -> None:
    decoder = decoder_after(data[:-1])
    assert not allows(decoder.state, data[-1])
    with pytest.raises(UnicodeDecodeError):
        decoder.feed(data[-1])


def test_lead_bytes() -> None:
    assert [b for b in range(256) if starts_character(b)] == [*range(0x80), *range(0xC2, 0xF5)]
