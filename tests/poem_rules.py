"""An independent checker of Tang poems: layout, acrostic, rhyme, 平仄, no repeats, keywords.

Written from the rules, not from ``textgen.forms``: it reads tones and finals from pypinyin
itself (heteronyms for tones, the default reading's final for rhyme, 中华新韵 groups) and checks
each rule on the finished text, so a bug in the constraint's tables or lookahead shows up here.
"""

from __future__ import annotations

import re

from pypinyin import Style, pinyin

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
LEVEL, OBLIQUE = "平", "仄"

# 中华新韵: the 14 groups over pypinyin's strict finals (ü written v; -i after zh ch sh r z c s).
_GROUP_OF_FINAL = {}
for _group, _finals in {
    "麻": "a ia ua", "波": "o e uo io", "皆": "ie ve", "开": "ai uai", "微": "ei uei", "豪": "ao iao",
    "尤": "ou iou", "寒": "an ian uan van", "文": "en in uen vn", "唐": "ang iang uang",
    "庚": "eng ing ong iong ueng", "齐": "i v", "支": "-i er", "姑": "u",
}.items():
    for _final in _finals.split():
        _GROUP_OF_FINAL[_final] = _group


def tones(char: str) -> set[str]:
    """平 and/or 仄 over every reading of ``char`` (tones 1-2 level, 3-4 oblique)."""
    out = set()
    for reading in pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)[0]:
        if reading[-1:] in ("1", "2"):
            out.add(LEVEL)
        elif reading[-1:] in ("3", "4"):
            out.add(OBLIQUE)
    return out


def rhyme(char: str) -> str | None:
    """The 中华新韵 group of ``char``'s default reading (None when pypinyin cannot read it)."""
    final = pinyin(char, style=Style.FINALS, strict=True)[0][0]
    initial = pinyin(char, style=Style.INITIALS, strict=True)[0][0]
    if final == "i" and initial in ("zh", "ch", "sh", "r", "z", "c", "s"):
        final = "-i"
    return _GROUP_OF_FINAL.get(final)


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


def tonal_problems(verses: list[str], pattern: str | None = None) -> list[str]:
    """What breaks 二四(六)分明, 对, 粘 and the verse ends; tried with each pattern (or the one given)."""
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
            wanted[len(verse) - 1] = LEVEL if i % 2 == 1 else OBLIQUE
            for position, tone in sorted(wanted.items()):
                if tone not in tones(verse[position]):
                    problems.append(f"verse {i + 1} char {position + 1} {verse[position]!r} is not {tone}")
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


def poem_problems(text: str, form: dict) -> list[str]:
    """Everything that breaks ``form`` (the API object) in the verses ``text``; empty when it holds."""
    chars, verses_n = form["chars_per_line"], 4 if form["kind"] == "jueju" else 8
    verses, problems = verses_of(text, chars, verses_n)
    if problems:
        return problems
    if form.get("acrostic") and "".join(v[0] for v in verses) != form["acrostic"]:
        problems.append("acrostic heads")
    if form.get("rhyme"):
        groups = {rhyme(v[-1]) for v in verses[1::2]}
        if len(groups) != 1 or None in groups:
            problems.append(f"even verses do not rhyme: {[v[-1] for v in verses[1::2]]}")
    if form.get("tones"):
        pattern = form["tones"] if isinstance(form["tones"], str) else None
        problems += tonal_problems(verses, pattern)
    if form.get("no_repeat"):
        poem = "".join(verses)
        twice = sorted({c for c in poem if poem.count(c) > 1})
        if twice:
            problems.append(f"repeated: {''.join(twice)}")
    problems += keyword_problems(verses, list(form.get("keywords") or []))
    return problems
