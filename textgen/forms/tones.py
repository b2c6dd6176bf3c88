"""Level and oblique tones (平仄) and the regulated tonal patterns of 五言/七言 near-style verse.

Tones follow 中华新韵, the standard :mod:`textgen.forms.rhyme` uses for rhyme groups: Mandarin
tones 1 and 2 are level (平), tones 3 and 4 oblique (仄); the neutral tone counts as neither.  A
character with several readings (pypinyin's heteronyms) counts as any of them, so 中 (zhōng,
zhòng) fits both.

The patterns (0-based verse ``v`` and position ``i`` in a verse of ``L`` characters):

* 二四(六)分明: characters 2 and 4 (and 6) of a verse alternate: 2 and 6 share a tone, 4 has the other;
* 对: the second verse of a couplet has the other tone at character 2 than the first;
* 粘: the first verse of the next couplet has the same tone at character 2 as the verse before it;
* the even verses (the rhyme verses) end level, the odd verses end oblique -- except the first
  verse of a 首句入韵 pattern, which ends level (and rhymes).

So the whole poem follows from the tone of character 2 of the first verse: 平起 (level) or 仄起
(oblique), and whether the first verse rhymes: four patterns, numbered by :data:`OBLIQUE_START`
and :data:`FIRST_RHYMES` bits.  Characters 1, 3 (and 5) are free, unless ``fine`` rules are on
(the book's, see :mod:`textgen.forms.books`), which fix one of them in a verse that ends level:

* 孤平: in a verse ending 仄平 (平平仄仄平, 仄仄平平仄仄平), the character five from the end (the
  first of 五言, the third of 七言) is level, so the level characters before the rhyme are never a
  single one between obliques (仄平仄仄平);
* 三平尾: in a verse ending 平平 (仄仄仄平平, 平平仄仄仄平平), the third character from the end is
  oblique, so the verse never ends on three levels.

These are the strict 王力 forms (the 拗救 variant 仄平平仄平 is not generated; a checker accepts it).
"""

from __future__ import annotations

from functools import lru_cache

from pypinyin import Style, pinyin

PING, ZE = 1, 2
"""Tone bits: a character's tones are a set of these (PING | ZE for a character with both readings)."""
PATTERNS = {"平起": 0, "仄起": 1}
"""The two patterns, by the tone of character 2 of the first verse."""
TONE_NAMES = {PING: "平", ZE: "仄"}
OBLIQUE_START, FIRST_RHYMES = 1, 2
"""Pattern bits: character 2 of the first verse is oblique (仄起); the first verse rhymes (首句入韵)."""
PATTERN_COUNT = 4
_FLIP = (0, 1, 1, 0)  # character 2 of verse v has the first verse's tone, flipped by 对 and kept by 粘


@lru_cache(maxsize=65536)
def tones_of(char: str) -> int:
    """The tone bits of ``char`` over all its readings (0 when pypinyin has no toned reading)."""
    bits = 0
    for reading in pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True,
                          errors="ignore")[:1]:
        for syllable in reading:
            digit = syllable[-1:] if syllable.isascii() else ""
            bits |= PING if digit in ("1", "2") else ZE if digit in ("3", "4") else 0
    return bits


def ends_level(pattern: int, verse: int) -> bool:
    """Whether ``verse`` (0-based) ends level under ``pattern``: the even verses, and the first of 首句入韵."""
    return verse % 2 == 1 or (verse == 0 and bool(pattern & FIRST_RHYMES))


def _pattern_tone(pattern: int, verse: int, position: int, chars_per_line: int) -> int:
    if position == chars_per_line - 1:
        return PING if ends_level(pattern, verse) else ZE
    if position % 2 == 0:
        return 0
    second = (pattern & OBLIQUE_START) ^ _FLIP[verse % 4]  # 0: character 2 of this verse is level
    level = second if (position // 2) % 2 == 0 else 1 - second
    return PING if level == 0 else ZE


def required_tone(pattern: int, verse: int, position: int, chars_per_line: int, fine: bool = False) -> int:
    """PING or ZE where ``pattern`` fixes the tone of (``verse``, ``position``), 0 where it is free;
    ``fine``: the 孤平 and 三平尾 rules fix one more character of a verse that ends level."""
    tone = _pattern_tone(pattern, verse, position, chars_per_line)
    if tone or not fine or not ends_level(pattern, verse):
        return tone
    before_last = _pattern_tone(pattern, verse, chars_per_line - 2, chars_per_line)
    if before_last == ZE and position == chars_per_line - 5:
        return PING  # 孤平
    if before_last == PING and position == chars_per_line - 3:
        return ZE  # 三平尾
    return 0


def fits(tones: int, required: int) -> bool:
    """Whether a character of ``tones`` may stand where ``required`` (0: free) is asked."""
    return required == 0 or bool(tones & required)
