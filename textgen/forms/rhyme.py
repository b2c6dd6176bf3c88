"""Rhyme groups of Chinese characters: the 14 groups of 中华新韵 over pypinyin's finals.

A character's rhyme is read from its most common modern reading (pypinyin's default, tones
ignored).  Finals are grouped as 中华新韵 (the 14-rhyme "new rhyme" table of the China Poetry
Society) groups them:

=====  ==========================  =====  ==========================
group  finals                      group  finals
=====  ==========================  =====  ==========================
麻     a ia ua                     寒     an ian uan üan
波     o e uo                      文     en in un ün
皆     ie üe                       唐     ang iang uang
开     ai uai                      庚     eng ing ong iong ueng
微     ei ui                       齐     i ü
豪     ao iao                      支     -i (zhi chi shi ri zi ci si), er
尤     ou iu                       姑     u
=====  ==========================  =====  ==========================

Two characters rhyme when they fall in the same group.  Modern readings are not Middle Chinese:
many Tang rhymes (入声 endings, shifted finals) do not hold under this table, which
``docs/FORMS.md`` measures on the corpus.  Characters pypinyin cannot read have no group.
"""

from __future__ import annotations

from functools import lru_cache

from pypinyin import Style, pinyin

GROUPS = ("麻", "波", "皆", "开", "微", "豪", "尤", "寒", "文", "唐", "庚", "齐", "支", "姑")

_FINAL_GROUP = {
    "a": "麻", "ia": "麻", "ua": "麻",
    "o": "波", "e": "波", "uo": "波",
    "ie": "皆", "üe": "皆",
    "ai": "开", "uai": "开",
    "ei": "微", "ui": "微",
    "ao": "豪", "iao": "豪",
    "ou": "尤", "iu": "尤",
    "an": "寒", "ian": "寒", "uan": "寒", "üan": "寒",
    "en": "文", "in": "文", "un": "文", "ün": "文",
    "ang": "唐", "iang": "唐", "uang": "唐",
    "eng": "庚", "ing": "庚", "ong": "庚", "iong": "庚", "ueng": "庚",
    "i": "齐", "ü": "齐",
    "-i": "支", "er": "支",
    "u": "姑",
}
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z",
             "c", "s")
_Y_W = {  # syllables spelled with y/w, as their finals
    "yi": "i", "ya": "ia", "ye": "ie", "yao": "iao", "you": "iu", "yan": "ian", "yin": "in", "yang": "iang",
    "ying": "ing", "yong": "iong", "yo": "o", "yu": "ü", "yue": "üe", "yuan": "üan", "yun": "ün",
    "wu": "u", "wa": "ua", "wo": "uo", "wai": "uai", "wei": "ui", "wan": "uan", "wen": "un", "wang": "uang",
    "weng": "ueng",
}


def final_of(syllable: str) -> str | None:
    """The final of a toneless pinyin syllable (``"zhuang"`` -> ``"uang"``, ``"shi"`` -> ``"-i"``)."""
    s = syllable.lower().replace("v", "ü").replace("u:", "ü")
    if s in _Y_W:
        return _Y_W[s]
    if s in ("er", "e", "a", "o", "ai", "ei", "ao", "ou", "an", "en", "ang", "eng"):
        return s
    initial = next((i for i in _INITIALS if s.startswith(i)), None)
    if initial is None:
        return None
    final = s[len(initial):]
    if final == "i" and initial in ("zh", "ch", "sh", "r", "z", "c", "s"):
        return "-i"
    if initial in ("j", "q", "x") and final.startswith("u"):
        final = "ü" + final[1:]  # ju, que, xuan, jun are written without the dots
    return final if final in _FINAL_GROUP else None


@lru_cache(maxsize=65536)
def rhyme_group(char: str) -> int:
    """Index into :data:`GROUPS` of ``char``'s rhyme, or -1 when it has none."""
    reading = pinyin(char, style=Style.NORMAL, heteronym=False, errors="ignore")
    if not reading or not reading[0] or not reading[0][0].isascii() or not reading[0][0].isalpha():
        return -1
    final = final_of(reading[0][0])
    return GROUPS.index(_FINAL_GROUP[final]) if final else -1


def rhymes(chars: str) -> bool:
    """Whether all of ``chars`` fall in one rhyme group."""
    groups = {rhyme_group(c) for c in chars}
    return len(groups) == 1 and -1 not in groups
