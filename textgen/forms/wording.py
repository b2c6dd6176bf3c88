"""The form a request written in words asks for: ``写一首七言绝句，题为春日，藏头春夏秋冬`` → a ``form`` object.

Chat clients send sentences, not ``form`` objects.  :func:`parse_form_request` reads one message
and returns the ``form`` object of the API (the one :func:`textgen.forms.prepare_form` checks) with
what it understood, or None when the text asks for no form (the chat route then continues the text).
It is deterministic: fixed word lists and patterns, no model.  The rules, in order:

1. **Kind** (required, else None): ``绝句``/``五绝``/``七绝``/``quatrain``/``jueju`` → ``jueju``;
   ``律诗``/``五律``/``七律``/``regulated verse``/``lushi`` → ``lushi``.
2. **Characters a verse**: ``五言``/``七言`` (or ``5言``), the ``五``/``七`` of ``五绝``/``七律``,
   ``five-character``/``seven-character`` (also ``5-character``, ``pentasyllabic``/``heptasyllabic``);
   none given: 5.
3. **Title**: ``题为X``/``题目是X``/``题曰X``/``以X为题``/``《X》``/``关于X的``,
   ``titled X``/``entitled X``/``called X``/``title: X``; else the one bare run of Chinese characters
   left over (``五言律诗 秋夜 押平水韵`` → 秋夜).
4. **Acrostic**: ``藏头X``/``藏头诗X``, ``acrostic X``/``acrostic on X``.
5. **Rhyme**: ``押韵``/``押…韵``/``用韵``, ``rhyme``/``rhyming``; ``押平水韵``/``押新韵``/``中华新韵``
   name the rhyme book (``book``, passed on when the form accepts it, else a note says so).
6. **Tones**: ``平起``/``仄起`` (that pattern), ``平仄``/``合律``/``格律``/``tonal``/``tones`` (true).
7. **No repeated character**: ``不重字``/``无重字``/``不重复``, ``no repeated``.
8. **Keywords**: ``含X``/``包含X、Y``/``嵌入X``/``关键词X``, ``with the words X, Y``.

Anything else left over is reported in :attr:`FormRequest.ignored`.  Tunes of 词 (``浣溪沙``)
plug in through ``tunes``: a table from tune name to the ``form`` fields of that tune (the chat
route passes the model's, :func:`server.chat_api.tunes_in_words`); a text naming one is that form
(``填一首鹧鸪天，题为春晚``: the title, rhyme, tones, no-repeat and keyword rules read on as above).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

HAN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
HAN_RUN = HAN + r"+"
DEFAULT_CHARS_PER_LINE = 5
"""Characters a verse when the request does not say (五言, the commoner form)."""
BOOKS = {"平水": "平水韵", "新": "中华新韵"}
"""Rhyme books by the words that name them, and the name the ``book`` field takes."""
SERVED_BOOK = "中华新韵"
"""The rhyme book of a form without a ``book`` field (:mod:`textgen.forms.rhyme`)."""

_KINDS = [
    (r"([五七57])言?绝句|([五七])绝|絶句|绝句|([五七57])言诗|quatrains?|jueju|jue ju", "jueju"),
    (r"([五七57])言?律诗|([五七])律|律诗|regulated\s+verse|lushi|lü\s*shi|eight-line\s+poem", "lushi"),
]
_CHARS = [
    r"([五七57])言",
    r"\b(five|seven|5|7)[\s-]*(?:character|char|syllable)s?\b",
    r"\b(penta|hepta)syllabic\b",
]
_NUMBERS = {"五": 5, "七": 7, "5": 5, "7": 7, "five": 5, "seven": 7, "penta": 5, "hepta": 7}
_TITLE = [
    r"题目?(?:为|是|叫|曰|作)[:：]?\s*[《「“\"']?(" + HAN_RUN + ")",
    r"题[:：]\s*[《「“\"']?(" + HAN_RUN + ")",
    r"以[《「“\"']?(" + HAN_RUN + r")[》」”\"']?为题",
    r"《(" + HAN_RUN + ")》",
    r"关于[《「“\"']?(" + HAN_RUN + r")[》」”\"']?的",
    r"\b(?:titled|entitled|called|named|with\s+the\s+title|title[:：]?)\s*[\"'“《]?(" + HAN_RUN + r")[\"'”》]?",
]
_ACROSTIC = [
    r"藏头诗?(?:为|是)?[:：]?\s*[《「“\"']?(?!诗)(" + HAN_RUN + r")[》」”\"']?",
    r"\bacrostic(?:\s+(?:on|of|with|heads?))?[:：]?\s*[\"'“]?(" + HAN_RUN + r")[\"'”]?",
    r"\bheads?[:：]?\s*[\"'“]?(" + HAN_RUN + r")[\"'”]?",
]
_RHYME_BOOK = r"押?(?:中华)?(平水|新)韵|中华新韵"
_RHYME = r"押韵|押\S{0,4}?韵|用韵|\brhym(?:e|es|ed|ing)\b"
_TONES = [(r"平起", "平起"), (r"仄起", "仄起"),
          (r"(?:要合|要讲|讲究|合乎|讲|合|守|依)?(?:平仄|格律)|合律|\btonal\b|\btones?\b|level\s+and\s+oblique", True)]
_NO_REPEAT = r"不重字|无重字|不重复|不要重复|\bno\s+repeated(?:\s+characters?)?|\bno\s+character\s+twice\b"
_KEYWORDS = [
    r"(?:包含|含有|含|嵌入|嵌|用上|关键词[:：]?)\s*(" + HAN_RUN + r"(?:\s*[、,，和与及]\s*" + HAN_RUN + r")*)",
    r"\bwith\s+the\s+words?\s+(" + HAN_RUN + r"(?:\s*(?:,|and|、)\s*" + HAN_RUN + r")*)",
]
_LEADING_FILLER = (r"^(?:藏头|请你?|麻烦|帮我|给我|为我|替我|能否|能不能|可以|可否|你|我要|我想要?|写|作|做|来|赋|填|"
                   r"一首|一篇|一阕|一阙|一曲|首|篇|阕|阙)")
_TRAILING_FILLER = r"(?:的|吧|呢|啊|一下|一首|诗|诗歌|词|好吗|可以吗)$"
_ENGLISH_FILLER = frozenset("please write compose make me a an the poem for us can you could give with and in of".split())
ACROSTIC_KINDS = {4: "jueju", 8: "lushi"}
"""A 藏头诗 that names no kind: its number of heads says which (4 verses or 8)."""
_SEPARATORS = r"[\s,，。、；;:：!！?？.]+"


@dataclass
class FormRequest:
    """What a request in words asked for."""

    form: dict[str, Any]
    """The API ``form`` object (title included)."""
    understood: list[str] = field(default_factory=list)
    """The words read, in the order of the rules (for the answer's ``textgen.form``)."""
    ignored: list[str] = field(default_factory=list)
    """Words left over that no rule reads."""
    notes: list[str] = field(default_factory=list)
    """What was understood but cannot be honoured by this server (e.g. a rhyme book it cannot choose)."""


def parse_form_request(text: str, *, form_fields: Collection[str] = (),
                       tunes: Mapping[str, Mapping[str, Any]] | None = None) -> FormRequest | None:
    """The form ``text`` asks for, or None when it names no kind of poem (nor a tune of ``tunes``).

    ``form_fields``: the fields the ``form`` object accepts (``book`` is passed on only when listed).
    """
    found = _Reader(text)
    form: dict[str, Any] | None = None
    for tune, fields in (tunes or {}).items():
        if found.take(re.escape(tune)):
            form = dict(fields)
            break
    acrostic = ""
    if form is None:
        kind, chars = _kind(found)
        if kind is None:
            acrostic = found.first(_ACROSTIC)
            kind = ACROSTIC_KINDS.get(len(acrostic))
            if kind is None:
                return None
            chars = _chars(found) or DEFAULT_CHARS_PER_LINE
        form = {"kind": kind, "chars_per_line": chars}
    request = FormRequest(form)
    title = found.first(_TITLE)
    acrostic = acrostic or found.first(_ACROSTIC)
    if acrostic:
        form["acrostic"] = acrostic
    book_match = found.take(_RHYME_BOOK)
    if book_match is not None or found.take(_RHYME) is not None:
        form["rhyme"] = True
    if book_match is not None:
        book = BOOKS[book_match.group(1) or "新"]
        if "book" in form_fields:
            form["book"] = book
        elif book != SERVED_BOOK:
            request.notes.append(f"rhyme book {book} understood, but this server rhymes by {SERVED_BOOK} only")
    for pattern, tones in _TONES:
        if found.take(pattern) is not None:
            form["tones"] = tones
            break
    if found.take(_NO_REPEAT) is not None:
        form["no_repeat"] = True
    keywords = found.first(_KEYWORDS)
    if keywords:
        form["keywords"] = [word for word in re.split(r"\s*(?:[、,，和与及]|and)\s*", keywords) if word]
    leftovers = found.leftovers()
    if not title:
        bare = [word for word in leftovers if re.fullmatch(HAN_RUN, word)]
        if bare:
            title = bare[0]
            leftovers.remove(title)
    if title:
        form["title"] = title
    request.understood = found.read
    request.ignored = leftovers
    return request


def _kind(found: _Reader) -> tuple[str | None, int]:
    """The kind and characters a verse the text names (None: it names no kind)."""
    for pattern, kind in _KINDS:
        match = found.take(pattern)
        if match is None:
            continue
        digit = next((g for g in match.groups() if g), None)
        chars = _NUMBERS[digit] if digit else _chars(found)
        return kind, chars or DEFAULT_CHARS_PER_LINE
    return None, DEFAULT_CHARS_PER_LINE


def _chars(found: _Reader) -> int | None:
    """The characters a verse the text names apart from the kind (五言, seven-character), if any."""
    for pattern in _CHARS:
        words = found.take(pattern)
        if words is not None:
            return _NUMBERS[words.group(1).lower()]
    return None


class _Reader:
    """The text, with each phrase a rule read cut out of it (so that what is left can be reported)."""

    def __init__(self, text: str) -> None:
        self.rest = text
        self.read: list[str] = []

    def take(self, pattern: str) -> re.Match | None:
        """The first match of ``pattern`` (case-insensitive), cut out of the text."""
        match = re.search(pattern, self.rest, flags=re.IGNORECASE)
        if match is not None:
            self.read.append(match.group(0).strip())
            self.rest = self.rest[:match.start()] + " " + self.rest[match.end():]
        return match

    def first(self, patterns: list[str]) -> str:
        """Group 1 of the first pattern that matches ("" when none does)."""
        for pattern in patterns:
            match = self.take(pattern)
            if match is not None:
                return match.group(1)
        return ""

    def leftovers(self) -> list[str]:
        """The words no rule read, filler words (请, 写一首, 吧, write, a, ...) dropped."""
        words = []
        for word in re.split(_SEPARATORS, self.rest):
            while True:
                shorter = re.sub(_TRAILING_FILLER, "", re.sub(_LEADING_FILLER, "", word))
                if shorter == word:
                    break
                word = shorter
            if word and word.lower() not in _ENGLISH_FILLER:
                words.append(word)
        return words
