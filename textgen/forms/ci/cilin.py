"""词林正韵: the 19 rhyme sections (部) that ci rhyme by, as merges of the 平水韵 groups.

戈载's 词林正韵 joins the 106 groups of 平水韵 into 14 sections of level and oblique (上声, 去声)
rhymes, each a level group set with its rising and departing counterparts (a ci may rhyme 平仄
通押 inside one 部, as 西江月 does), and 5 sections of entering (入声) rhymes:

===  ===================  ===================  =======================
部   平                   上                   去 / 入
===  ===================  ===================  =======================
1    東冬                 董腫                 送宋
2    江陽                 講養                 絳漾
3    支微齊 灰*           紙尾薺 賄*           寘未霽 泰* 隊*
4    魚虞                 語麌                 御遇
5    佳* 灰*              蟹 賄*               泰* 卦* 隊*
6    真文 元*             軫吻 阮*             震問 願*
7    元* 寒刪先           阮* 旱潸銑           願* 翰諫霰
8    蕭肴豪               篠巧皓               嘯效號
9    歌                   哿                   箇
10   佳* 麻               馬                   卦* 禡
11   庚青蒸               梗迥                 敬徑
12   尤                   有                   宥
13   侵                   寢                   沁
14   覃鹽咸               感琰豏               勘豔陷
15                                             入 屋沃
16                                             入 覺藥
17                                             入 質陌錫職緝
18                                             入 物月曷黠屑葉†
19                                             入 合洽 業†
===  ===================  ===================  =======================

† 平水韵's 葉 merged three 廣韻 rhymes that 戈载 parts: 葉 and 帖 go to 18, 業 goes to 19 (with
合盍洽狎乏).  The 平水韵 table keeps the characters of 廣韻 業 apart (its ``"parted"`` key): a
character with a 業 reading is in 19, and one whose 葉 membership comes from 業 alone is not in
18 (夹, by 袷: 19 only).

The groups marked * are split between two 部 character by character in 戈载's book (灰: 回杯
梅 in 3, 来才开 in 5; 元: 魂痕 in 6, 元言 in 7; 佳: 街鞋 in 5, 涯娃 in 10).  The 平水韵 table
has no such split, so a character of a split group counts in both 部 it feeds: a 部 is looser
there than 戈载's, never stricter.

A character's 部 come from the shared 平水韵 table (:data:`textgen.forms.books.DATA_FILE`, every
reading and form of a character), kept apart by tone: :meth:`CiLin.bu_bits` answers for the level
readings, the oblique ones, or both.
"""

from __future__ import annotations

import json
from functools import lru_cache

from textgen.forms.books import DATA_FILE
from textgen.forms.tones import PING, ZE

BU_COUNT = 19
"""词林正韵's sections: 1-14 level and oblique, 15-19 entering."""

BU_GROUPS: dict[int, str] = {
    1: "東冬董腫送宋", 2: "江陽講養絳漾", 3: "支微齊灰紙尾薺賄寘未霽泰隊", 4: "魚虞語麌御遇",
    5: "佳灰蟹賄泰卦隊", 6: "真文元軫吻阮震問願", 7: "元寒刪先阮旱潸銑願翰諫霰", 8: "蕭肴豪篠巧皓嘯效號",
    9: "歌哿箇", 10: "佳麻馬卦禡", 11: "庚青蒸梗迥敬徑", 12: "尤有宥", 13: "侵寢沁", 14: "覃鹽咸感琰豏勘豔陷",
    15: "屋沃", 16: "覺藥", 17: "質陌錫職緝", 18: "物月曷黠屑葉", 19: "合洽",
}
"""部 (1-based) -> the 平水韵 group names it merges (level, rising, departing; or entering)."""

PARTED_BU: dict[str, int] = {"業": 19}
"""廣韻 rhyme the 平水韵 table keeps apart from its group -> the 部 (1-based) 戈载 gives it."""

BOTH = PING | ZE


def bu_name(bu: int) -> str:
    """``"第7部"`` for section 7 (1-based)."""
    return f"第{bu}部"


def bu_names(bits: int) -> list[str]:
    """The names of the 部 set in ``bits`` (bit ``b - 1`` for 部 ``b``)."""
    return [bu_name(b + 1) for b in range(BU_COUNT) if bits >> b & 1]


class CiLin:
    """词林正韵 over the 平水韵 table: each character's 部 by the tone of the reading."""

    def __init__(self) -> None:
        data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
        level = set(data["level"])
        bu_of_group: dict[str, int] = {}
        for bu, names in BU_GROUPS.items():
            for name in names:
                bu_of_group[name] = bu_of_group.get(name, 0) | 1 << (bu - 1)
        every = set(data["level"] + data["rising"] + data["departing"] + data["entering"])
        if set(bu_of_group) != every:
            raise ValueError(f"词林正韵's merge misses 平水韵 groups {sorted(every - set(bu_of_group))} "
                             f"or names unknown ones {sorted(set(bu_of_group) - every)}")
        parted = data.get("parted", {})
        if set(parted) != set(PARTED_BU):
            raise ValueError(f"the 平水韵 table parts the 廣韻 rhymes {sorted(parted)}, 词林正韵 knows "
                             f"{sorted(PARTED_BU)}: rebuild it (python -m textgen.forms.pingshui_build)")
        alone = {(part["group"], char) for part in parted.values() for char in part["alone"]}
        self._bits: dict[str, tuple[int, int]] = {}  # char -> (部 bits of level readings, of oblique)
        for name, members in data["groups"].items():
            for char in members:
                if (name, char) not in alone:  # in the group by a parted rhyme only: not in the group's 部
                    self._add(char, PING if name in level else ZE, bu_of_group[name])
        for rhyme, part in parted.items():
            for char in part["chars"]:
                self._add(char, PING if part["group"] in level else ZE, 1 << (PARTED_BU[rhyme] - 1))

    def _add(self, char: str, tone: int, bits: int) -> None:
        ping, ze = self._bits.get(char, (0, 0))
        self._bits[char] = (ping | bits, ze) if tone == PING else (ping, ze | bits)

    def bu_bits(self, char: str, tones: int = BOTH) -> int:
        """The 部 of ``char``'s readings of ``tones`` (PING, ZE or both), a bit per 部 (0: none)."""
        ping, ze = self._bits.get(char, (0, 0))
        return (ping if tones & PING else 0) | (ze if tones & ZE else 0)

    def tones_of(self, char: str) -> int:
        """PING and/or ZE: the tones of ``char``'s readings (0: the book does not know it)."""
        ping, ze = self._bits.get(char, (0, 0))
        return (PING if ping else 0) | (ZE if ze else 0)

    def rhymes(self, chars: str, tones: tuple[int, ...] | None = None) -> int:
        """The 部 all of ``chars`` share (bits; 0 when they do not rhyme), each read in the tone of
        ``tones`` (one per character, 0 or BOTH: any reading)."""
        bits = (1 << BU_COUNT) - 1
        for i, char in enumerate(chars):
            tone = tones[i] if tones else BOTH
            bits &= self.bu_bits(char, tone or BOTH)
        return bits if chars else 0


@lru_cache(maxsize=1)
def cilin() -> CiLin:
    """The book (loaded once)."""
    return CiLin()
