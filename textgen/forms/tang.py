"""Tang forms by construction: 绝句 (4 verses) and 律诗 (8 verses) of 5 or 7 characters.

The poem is written as the corpus writes it: one couplet a line, ``，`` after odd verses, ``。``
after even ones, ``\\n`` between couplets, nothing after the last ``。``::

    白日依山尽，黄河入海流。
    欲穷千里目，更上一层楼。

:class:`TangConstraint` walks that layout one character at a time and allows, at each step, only
the characters the layout permits there: inside a verse, single-character Chinese pieces of the
vocabulary (never byte pieces, punctuation or spaces); the acrostic head at a verse's first
character; at the last character of an even verse with ``rhyme`` (and of the first verse under
首句入韵), characters of the rhyme group the poem has taken, by the form's rhyme book (see
:mod:`textgen.forms.books`).  Every mask is a precomputed (V,) tensor of :class:`TangTables`,
built once per tokenizer and book.

The kind (:data:`FORM_KIND`, a :class:`TangKind`) reads the API's ``jueju``/``lushi`` ``form``
object into a :class:`TangForm` and prepares its constraint for a model and prompt, naming the
first rule that no completion can keep.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from textgen.forms.base import (
    MAX_KEYWORDS,
    MAX_TITLE_CHARS,
    FormError,
    PreparedForm,
    form_keys,
    keyword_list,
    optional_bool,
    optional_str,
)
from textgen.forms.books import BOOKS, DEFAULT_BOOK, RhymeBook, rhyme_book
from textgen.forms.han import HanPieces, is_han
from textgen.forms.lookahead import (
    TONE_SETS,
    PoemPlan,
    char_classes,
    feasible_combos,
    rhyme_chars,
    rhyme_margin,
)
from textgen.forms.tones import PATTERN_COUNT, PATTERNS, PING, ZE, ends_level, fits, required_tone
from textgen.sampling import Constraint
from textgen.tokenizer import CharTokenizer, TokenizerError, per_tokenizer

if TYPE_CHECKING:
    from textgen.export import LoadedModel

COMMA, PERIOD, NEWLINE = "，", "。", "\n"
VERSES = {"jueju": 4, "lushi": 8}
KIND_DEFAULTS = {
    "jueju": {"rhyme": True, "tones": False},
    "lushi": {"rhyme": True, "tones": True},
}
"""The rules a request that leaves ``rhyme`` or ``tones`` out (or null) gets, per kind: a 绝句 or 律诗
rhymes by definition, and a 律诗's tonal pattern is part of its form (``docs/FORMS.md`` measures
what ``tones`` costs).  The one source of these defaults: the API, the script and the page read them."""


class TangTables(HanPieces):
    """Per-tokenizer and book masks: Chinese characters, punctuation, one-hot heads, rhyme groups, tones."""

    def __init__(self, tokenizer: CharTokenizer, book: str = DEFAULT_BOOK) -> None:
        super().__init__(tokenizer)
        V = tokenizer.vocab_size
        self.book: RhymeBook = rhyme_book(book)
        groups_count = len(self.book.groups)
        group_masks = torch.zeros((groups_count, V), dtype=torch.bool)
        tones = torch.zeros(V, dtype=torch.long)
        #: unique Chinese characters of the vocabulary per (tone set, rhyme group) class (a character
        #: of several groups counts in each), and per tone set (once)
        self.class_counts = [0] * (TONE_SETS * (groups_count + 1))
        self.tone_totals = [0] * TONE_SETS
        for i, piece, first in self.han_pieces:
            bits = self.book.rhyme_bits(piece)
            for g in range(groups_count):
                if bits >> g & 1:
                    group_masks[g, i] = True
            tones[i] = self.book.tones_of(piece)
            if first:
                for k in char_classes(self.book, piece):
                    self.class_counts[k] += 1
                self.tone_totals[int(tones[i])] += 1
        han = self.han
        #: (G, V): Chinese pieces of each rhyme group.
        self.group_masks = group_masks
        #: Chinese pieces with a level (PING) or oblique (ZE) reading.
        self.tone_masks = {PING: han & (tones & PING > 0), ZE: han & (tones & ZE > 0)}
        self._rhyme: dict[int, Tensor] = {}

    def rhyme_mask(self, group_bits: int) -> Tensor:
        """Chinese pieces in any of the groups set in ``group_bits`` (a bit per group)."""
        mask = self._rhyme.get(group_bits)
        if mask is None:
            chosen = [g for g in range(len(self.book.groups)) if group_bits >> g & 1]
            mask = self.group_masks[chosen].any(dim=0)
            self._rhyme[group_bits] = mask
        return mask



_books_of = per_tokenizer(lambda tokenizer: {})
_books_lock = threading.Lock()


def tang_tables(tokenizer: CharTokenizer, book: str = DEFAULT_BOOK) -> TangTables:
    """The :class:`TangTables` of ``tokenizer`` under ``book`` (built on first use, then cached)."""
    built = _books_of(tokenizer)
    with _books_lock:
        if book not in built:
            built[book] = TangTables(tokenizer, book)
        return built[book]


def _api(description: str, schema: dict, **extra) -> dict:
    """Field metadata: the field's JSON schema in the API (``/openapi.json`` and the docs)."""
    return {"schema": {**schema, "description": description}, **extra}


@dataclass(frozen=True)
class TangForm:
    """A validated Tang form; its fields (and their metadata) are the API's ``PoemForm`` object.

    ``rhyme`` and ``tones`` left None mean the kind's default (:data:`KIND_DEFAULTS`), which
    :func:`textgen.forms.prepare_form` fills in; a TangForm built by hand with None has them off.
    """

    kind: str = field(metadata=_api("Quatrain (4 verses) or regulated verse (8).", {"enum": list(VERSES)}))
    chars_per_line: int = field(metadata=_api("Chinese characters per verse.", {"enum": [5, 7]}))
    acrostic: str = field(default="", metadata=_api("The first character of each verse.", {"type": "string"}))
    title: str = field(default="", metadata=_api("Written first, as the poem's title line.", {"type": "string"}))
    rhyme: bool | None = field(default=None, metadata=_api(
        "The even verses end on one rhyme group of `book` (default: true for jueju and lushi).",
        {"type": ["boolean", "null"]}))
    tones: bool | str | None = field(default=None, metadata=_api(
        "Regulated tones (平仄) by `book`: true (the pattern the first verse takes), or the pattern, 平起 or 仄起; "
        "by 平水韵 also no 孤平 and no 三平尾 (default: true for lushi, false for jueju).",
        {"anyOf": [{"type": "boolean"}, {"enum": list(PATTERNS)}, {"type": "null"}]}))
    no_repeat: bool = field(default=False, metadata=_api(
        "No Chinese character twice in the poem (acrostic heads and keywords count).", {"type": "boolean"}))
    keywords: tuple[str, ...] = field(default=(), metadata=_api(
        "Words (one or more Chinese characters) that each appear in the poem, at most one a verse.",
        {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 8}))
    book: str = field(default=DEFAULT_BOOK, metadata=_api(
        "The rhyme book `rhyme` and `tones` follow: 平水韵 (the 106 groups of the Tang poets) or 中华新韵 "
        "(modern Mandarin).", {"enum": list(BOOKS)}))
    first_verse_rhymes: bool | None = field(default=None, metadata=_api(
        "首句入韵: true, the first verse ends level in the rhyme group too; false, it does not; null, either "
        "(the model chooses; under 中华新韵, false).", {"type": ["boolean", "null"]}))

    @property
    def verses(self) -> int:
        return VERSES[self.kind]

    @property
    def fine_tones(self) -> bool:
        """Whether ``tones`` adds 孤平 and 三平尾 (the book's rule)."""
        return bool(self.tones) and rhyme_book(self.book).fine_tones

    @property
    def lookahead(self) -> bool:
        """Whether a rule that needs :mod:`textgen.forms.lookahead` is on."""
        return bool(self.tones or self.no_repeat or self.keywords or self.first_verse_rhymes is not None)


class LayoutError(ValueError):
    """A character the layout does not allow where it stands (the message says what it expected)."""


class TangConstraint(Constraint):
    """Masks one sample's choices so that the text completes a :class:`TangForm` poem.

    The state is (verse, position in the verse); position ``chars_per_line`` is the verse's
    punctuation, and ``chars_per_line + 1`` the line break after an even verse.  With ``tones``,
    ``no_repeat`` or ``keywords`` it also holds the tonal patterns still possible, the characters
    used, the keywords still to write, and asks :mod:`textgen.forms.lookahead` which characters
    keep the poem completable.
    """

    def __init__(self, form: TangForm, tables: TangTables | None) -> None:
        self.form = form
        self.tables = tables
        self.book = rhyme_book(form.book)
        self.verse = 0
        self.position = 0
        #: per pattern, the groups the rhyme verses so far all share
        self.rhyme_bits = [(1 << len(self.book.groups)) - 1] * PATTERN_COUNT
        self.plan = PoemPlan(form, tables) if form.lookahead else None
        self.patterns = self.plan.patterns if self.plan else 1
        self.used: set[str] = set()
        self.verse_text = ""
        self.pending: tuple[str, ...] = tuple(form.keywords)
        self.keyword_verses: frozenset[int] = frozenset()
        self.counts = list(self.plan.counts) if self.plan else []
        self.totals = list(self.plan.totals) if self.plan else []
        self.used_mask = torch.zeros_like(tables.han) if tables is not None and form.no_repeat else None

    def clone(self) -> TangConstraint:
        """An independent copy (the per-sample constraint made from a prepared template)."""
        other = copy.copy(self)
        other.used, other.counts, other.totals = set(self.used), list(self.counts), list(self.totals)
        other.rhyme_bits = list(self.rhyme_bits)
        if self.used_mask is not None:
            other.used_mask = self.used_mask.clone()
        return other

    def _probe(self) -> TangConstraint:
        """A copy to try a character on (without the (V,) mask of used characters)."""
        other = copy.copy(self)
        other.used, other.counts, other.totals = set(self.used), list(self.counts), list(self.totals)
        other.rhyme_bits = list(self.rhyme_bits)
        other.used_mask = None
        return other

    # ----------------------------------------------------------------- the layout
    def _expected(self) -> str:
        """What the layout wants next: "han", "，", "。", "\\n" or "" (complete)."""
        L = self.form.chars_per_line
        if self.verse >= self.form.verses:
            return ""
        if self.position < L:
            return "han"
        if self.position == L:
            return COMMA if self.verse % 2 == 0 else PERIOD
        return NEWLINE

    def _is_rhyme_slot(self, pattern: int = 0) -> bool:
        """Whether the next character ends a verse that rhymes under ``pattern``."""
        return self.form.rhyme and self.position == self.form.chars_per_line - 1 and ends_level(pattern, self.verse)

    def _feed_rhyme(self, char: str, where: str) -> None:
        """Narrow each pattern's rhyme groups by a verse's last character (a pattern it breaks dies)."""
        bits = self.book.rhyme_bits(char)
        apart = self.verse == 0 and self.form.first_verse_rhymes is False
        alive = 0
        for p in range(PATTERN_COUNT):
            if not self.patterns >> p & 1:
                continue
            if self._is_rhyme_slot(p):
                kept = self.rhyme_bits[p] & bits
            elif apart:
                kept = self.rhyme_bits[p] & ~bits  # 首句不入韵: the rhyme is none of its groups
            else:
                kept = self.rhyme_bits[p]
            if kept:
                self.rhyme_bits[p] = kept
                alive |= 1 << p
        if not alive:
            if apart:
                raise LayoutError(f"{where}: {char!r} leaves no rhyme group apart from the first verse's")
            raise LayoutError(f"{where}: {char!r} does not rhyme with the verses before it "
                              f"(by {self.book.name})")
        self.patterns = alive

    def slot_index(self) -> int:
        """The flat index (verse * chars_per_line + position) of the next Chinese character's slot."""
        L = self.form.chars_per_line
        if self.verse >= self.form.verses:
            return self.form.verses * L
        return self.verse * L + self.position if self.position < L else (self.verse + 1) * L

    def feed(self, char: str) -> None:
        """Advance by one character; raises :class:`LayoutError` if the layout forbids it."""
        expected = self._expected()
        if expected == "":
            raise LayoutError(f"the poem is already complete, got {char!r}")
        where = f"verse {self.verse + 1}, character {self.position + 1}"
        if expected == "han":
            if not is_han(char):
                raise LayoutError(f"{where}: expected a Chinese character, got {char!r}")
            if self.position == 0 and self.form.acrostic and char != self.form.acrostic[self.verse]:
                raise LayoutError(f"{where}: expected the acrostic head {self.form.acrostic[self.verse]!r}, "
                                  f"got {char!r}")
            if self.form.rhyme and self.position == self.form.chars_per_line - 1:
                self._feed_rhyme(char, where)
            if self.plan is not None:
                self._feed_rules(char, where)
            self.position += 1
            return
        if char != expected:
            raise LayoutError(f"{where}: expected {expected!r}, got {char!r}")
        if expected == PERIOD and self.verse == self.form.verses - 1:
            self.verse += 1  # the last verse: complete, no line break after it
        elif expected == COMMA or expected == NEWLINE:
            self.verse += 1
            self.position = 0
            self.verse_text = ""
        else:
            self.position += 1

    def _feed_rules(self, char: str, where: str) -> None:
        """The tones, no_repeat and keyword bookkeeping of one Chinese character."""
        form = self.form
        if form.no_repeat and char in self.used:
            raise LayoutError(f"{where}: {char!r} is already in the poem (no_repeat)")
        if form.tones:
            alive = 0
            tones = self.book.tones_of(char)
            for p in range(PATTERN_COUNT):
                required = required_tone(p, self.verse, self.position, form.chars_per_line, form.fine_tones)
                if self.patterns >> p & 1 and fits(tones, required):
                    alive |= 1 << p
            if not alive:
                rules = "平仄, 孤平, 三平尾" if form.fine_tones else "平仄"
                raise LayoutError(f"{where}: {char!r} does not fit the tonal pattern ({rules}, by {self.book.name})")
            self.patterns = alive
        self.feed_used(char)
        self.verse_text += char
        done = [w for w in self.pending if self.verse_text.endswith(w)]
        if done and self.verse in self.keyword_verses:
            raise LayoutError(f"{where}: {done[0]!r} would be a second keyword in this verse")
        if done:
            self.pending = tuple(w for w in self.pending if w not in done)
            self.keyword_verses |= {self.verse}

    def feed_used(self, char: str) -> None:
        """Count ``char`` as written in the poem (``no_repeat``'s bookkeeping: it is not written again)."""
        if self.form.no_repeat and char not in self.used and char not in self.plan.special \
                and self.tables is not None and self.tables.has_head(char):
            for k in char_classes(self.book, char):
                self.counts[k] -= 1
            self.totals[self.book.tones_of(char)] -= 1
        self.used.add(char)
        if self.used_mask is not None and char in self.tables.ids:
            self.used_mask[self.tables.ids[char]] = True

    # ----------------------------------------------------------------- the Constraint methods
    def allowed(self) -> Tensor | None:
        tables = self.tables
        expected = self._expected()
        if expected == "":
            return None
        if expected != "han":
            return tables.onehot(expected)
        if self.position == 0 and self.form.acrostic:
            return tables.onehot(self.form.acrostic[self.verse])
        if self.plan is not None:
            return self._lookahead_mask()
        if self._is_rhyme_slot():
            return tables.rhyme_mask(self.rhyme_bits[0])
        return tables.han

    def feasible(self) -> bool:
        """Whether some completion of the poem keeps every rule (see :mod:`textgen.forms.lookahead`)."""
        return self.plan is None or bool(feasible_combos(self, first=True))

    def _lookahead_mask(self) -> Tensor:
        """Characters after which the poem can still be completed (ordinary ones by class, keyword
        characters one by one)."""
        tables, form = self.tables, self.form
        combos = feasible_combos(self, generic=True)
        mask = torch.zeros_like(tables.han)
        last = self.position == form.chars_per_line - 1
        for p in sorted({p for p, _ in combos}):
            groups = [g for q, g in combos if q == p]
            if self._is_rhyme_slot(p):
                chars = tables.rhyme_mask(sum(1 << g for g in groups))
                if form.tones:
                    chars = chars & tables.tone_masks[PING]
                mask = mask | chars
                continue
            required = required_tone(p, self.verse, self.position, form.chars_per_line,
                                     form.fine_tones) if form.tones else 0
            chars = tables.tone_masks[required] if required else tables.han
            if last and self.verse == 0 and form.rhyme and form.first_verse_rhymes is False:
                chars = chars & ~torch.stack([tables.group_masks[g] for g in groups]).all(dim=0)
            if form.no_repeat and len(groups) == 1 and groups[0] >= 0 and rhyme_margin(self, groups[0]) <= 0:
                chars = chars & ~rhyme_chars(tables, groups[0], bool(form.tones))
            mask = mask | chars
        mask = mask & ~self.plan.exclude
        if self.used_mask is not None:
            mask = mask & ~self.used_mask
        for char in self._keyword_steps():
            probe = self._probe()
            try:
                probe.feed(char)
                ok = probe.feasible()
            except LayoutError:
                ok = False
            mask[tables.ids[char]] = ok
        return mask

    def _keyword_steps(self) -> set[str]:
        """The characters that would begin, continue or finish a pending keyword at this slot (tried one
        by one; any other keyword character acts as an ordinary one, or under ``no_repeat`` is excluded)."""
        steps = set()
        heads = self.form.acrostic if self.form.no_repeat else ""
        for word in self.pending:
            for start in range(max(0, self.position - len(word) + 1), self.position + 1):
                if self.verse_text[start:self.position] == word[:self.position - start]:
                    steps.add(word[self.position - start])
        return steps - set(heads)  # under no_repeat a head stands only in its own slot (not this one)

    def advance(self, token: int, text: str) -> None:
        for char in text:
            self.feed(char)

    def is_complete(self) -> bool:
        return self.verse >= self.form.verses

    def must_continue(self) -> bool:
        """A poem is never cut short: the row runs past ``max_new_chars`` until it is complete."""
        return not self.is_complete()


def poem_length(form: TangForm) -> int:
    """Characters of a complete poem (without the title line)."""
    couplets = form.verses // 2
    return form.verses * (form.chars_per_line + 1) + couplets - 1


# --------------------------------------------------------------------------- checking text
def check_poem(text: str, form: TangForm) -> str | None:
    """Why ``text`` (the verses, no title line) is not a complete poem of ``form``; None if it is."""
    constraint = TangConstraint(form, None)
    try:
        for char in text:
            constraint.feed(char)
    except LayoutError as error:
        return str(error)
    if not constraint.is_complete():
        return "the poem is incomplete"
    if constraint.pending:
        return f"keyword(s) missing: {', '.join(constraint.pending)}"
    return None


def even_verse_ends(text: str, chars_per_line: int) -> str:
    """The last characters of the even verses of a poem written in the corpus layout."""
    ends = []
    for line in text.split(NEWLINE):
        if line.endswith(PERIOD) and len(line) > chars_per_line + 1:
            ends.append(line[-2])
    return "".join(ends)


# --------------------------------------------------------------------------- the kind: the API's form object


def _tones(form: Mapping, default: bool) -> bool | str:
    value = form.get("tones")
    if value is None:
        return default
    if value is False:
        return False
    if value is True or (isinstance(value, str) and value in PATTERNS):
        return value
    raise FormError("form.tones", f"`form.tones` must be true, false, null, {' or '.join(map(repr, PATTERNS))}, "
                                  f"got {value!r}")


def _keywords(form: Mapping, tables, loaded: LoadedModel, chars: int, verses: int) -> tuple[str, ...]:
    value = keyword_list(form, most=min(verses, MAX_KEYWORDS), longest=chars, place="verse", writes=tables.has_head,
                         model=loaded.name)
    for word in value:
        for other in value:
            if other != word and other in word:
                raise FormError("form.keywords", f"`form.keywords`: {other!r} is part of {word!r} (one keyword "
                                                 "a verse: give the longer one alone)")
    return value


def _book(form: Mapping) -> str:
    book = form.get("book")
    if book is None:
        return DEFAULT_BOOK
    if book not in BOOKS:
        raise FormError("form.book", f"`form.book` must be one of {', '.join(BOOKS)}, got {book!r}")
    return book


def tang_spec(form: Mapping, loaded: LoadedModel) -> TangForm:
    """The validated :class:`TangForm` of a jueju/lushi API object (FormError names the culprit)."""
    kind = form.get("kind")
    if not isinstance(kind, str) or kind not in VERSES:  # an object or a list is no key
        raise FormError("form.kind", f"`form.kind` must be one of {', '.join(VERSES)}, got {kind!r}")
    allowed = form_keys(TangForm)
    for key in form:
        if key not in allowed:
            raise FormError(f"form.{key}", f"unknown field `form.{key}` for kind {kind!r} "
                                           f"(fields: {', '.join(sorted(allowed))})")
    return _tang_spec(kind, form, loaded, tang_tables(loaded.tokenizer, _book(form)))


def _tang_spec(kind: str, form: Mapping, loaded: LoadedModel, tables) -> TangForm:
    """The :class:`TangForm` of the API object, each field checked (FormError names the culprit)."""
    verses = VERSES[kind]
    book = _book(form)
    if "chars_per_line" not in form:
        raise FormError("form.chars_per_line", "`form.chars_per_line` is required (5 or 7)")
    chars = form["chars_per_line"]
    if isinstance(chars, bool) or chars not in (5, 7):
        raise FormError("form.chars_per_line", f"`form.chars_per_line` must be 5 or 7, got {chars!r}")
    acrostic = optional_str(form, "acrostic")
    if acrostic and len(acrostic) != verses:
        raise FormError("form.acrostic", f"`form.acrostic` must give one character for each of the "
                                         f"{verses} verses of a {kind}, got {len(acrostic)}")
    for head in acrostic:
        if not tables.has_head(head):
            raise FormError("form.acrostic", f"`form.acrostic`: model {loaded.name!r} cannot write {head!r} "
                                             "(not a Chinese character of its vocabulary)")
    title = optional_str(form, "title")
    if len(title) > MAX_TITLE_CHARS or "\n" in title or "\r" in title:
        raise FormError("form.title", f"`form.title` must be one line of at most {MAX_TITLE_CHARS} characters")
    try:
        loaded.tokenizer.encode(title)
    except TokenizerError as error:
        raise FormError("form.title", f"`form.title`: {error}") from error
    defaults = KIND_DEFAULTS[kind]
    rhyme, tones = optional_bool(form, "rhyme", defaults["rhyme"]), _tones(form, defaults["tones"])
    first_verse_rhymes = optional_bool(form, "first_verse_rhymes", None)
    if first_verse_rhymes is not None and not rhyme and not tones:
        raise FormError("form.first_verse_rhymes", "`form.first_verse_rhymes` needs `form.rhyme` or `form.tones` "
                                                   "(it says whether the first verse rhymes, or ends level)")
    no_repeat = optional_bool(form, "no_repeat")
    keywords = _keywords(form, tables, loaded, chars, verses)
    missing = [c for c in (COMMA, PERIOD, NEWLINE) if c not in tables.ids]
    if missing or not bool(tables.han.any()):
        lacks = ", ".join(map(repr, missing)) or "Chinese characters"
        raise FormError("form.kind", f"model {loaded.name!r} cannot write a {kind}: its vocabulary lacks {lacks}")
    if no_repeat:
        for name, text in (("form.acrostic", acrostic), ("form.keywords", "".join(keywords))):
            twice = sorted({c for c in text if text.count(c) > 1})
            if twice:
                raise FormError(name, f"`{name}` uses {''.join(twice)!r} twice, which `form.no_repeat` forbids")
    return TangForm(kind, chars, acrostic, title, rhyme, tones, no_repeat, keywords, book, first_verse_rhymes)


# The rules a form adds to the layout, in the order a conflict is looked for (and named).
_RULES = ("acrostic", "rhyme", "tones", "first_verse_rhymes", "no_repeat", "keywords")


def rules_one_by_one(spec: TangForm) -> Iterator[tuple[str, TangForm]]:
    """``("", the layout alone)``, then ``(rule, the form with the rules so far)`` for each rule of
    :data:`_RULES` that ``spec`` sets, in that order: how a conflict is found and named."""
    trial = replace(spec, acrostic="", rhyme=False, tones=False, no_repeat=False, keywords=(),
                                first_verse_rhymes=None)
    yield "", trial
    for rule in _RULES:
        if getattr(spec, rule) != getattr(trial, rule):
            trial = replace(trial, **{rule: getattr(spec, rule)})
            yield rule, trial


def _template(spec: TangForm, tables, verses_text: str, kind: str) -> TangConstraint:
    """The constraint after the prompt's verses; FormError if the prompt breaks the form or no
    completion can keep every rule (the first rule that makes it impossible is named)."""
    named: list[str] = []
    for rule, trial in rules_one_by_one(spec):
        template = TangConstraint(trial, tables)
        try:
            for char in verses_text:
                template.feed(char)
        except LayoutError as error:
            raise FormError("prompt", f"the prompt cannot begin a {spec.chars_per_line}-character {kind}"
                                      f"{' with ' + ', '.join(named + [f'form.{rule}']) if rule else ''}: "
                                      f"{error}") from error
        if not template.feasible():
            raise FormError(f"form.{rule}", _conflict(rule, trial, tables, verses_text, named))
        if rule:
            named.append(f"form.{rule}")
    return template


def _conflict(rule: str, trial: TangForm, tables, verses_text: str, named: list[str]) -> str:
    """Why no poem can keep ``rule`` once the rules before it (``named``) are on."""
    others = " together with " + ", ".join(named) if named else ""
    prompt = " after this prompt" if verses_text else ""
    if rule == "keywords":
        for word in trial.keywords:
            alone = TangConstraint(replace(trial, keywords=(word,)), tables)
            for char in verses_text:
                alone.feed(char)
            if not alone.feasible():
                return f"`form.keywords`: {word!r} fits no verse{others}{prompt}"
        return f"`form.keywords`: the keywords {list(trial.keywords)!r} do not all fit, one a verse{others}{prompt}"
    if rule == "":
        return f"`form.kind`: the model's vocabulary cannot fill this form{prompt}"
    if rule == "tones" and trial.acrostic and not PoemPlan(trial, None).patterns:
        return (f"`form.tones`: the acrostic heads {trial.acrostic!r} fit no tonal pattern by {trial.book}"
                + (" (against 孤平, a head that opens a five-character verse ending 仄平 must be level)"
                   if trial.fine_tones and trial.chars_per_line == 5 else ""))
    return f"`form.{rule}` cannot be met{others}{prompt}: the model's vocabulary has too few characters that fit"


def _prepare(spec: TangForm, loaded: LoadedModel, prompt: str) -> PreparedForm:
    """The Tang form ``spec`` after ``prompt`` (see :class:`TangKind`)."""
    tables, kind = tang_tables(loaded.tokenizer, spec.book), spec.kind
    own_title, verses_text = split_title(prompt)
    if own_title and spec.title:
        raise FormError("prompt", "the prompt has a title line and `form.title` is given too")
    template = _template(spec, tables, verses_text, kind)
    if template.is_complete():
        raise FormError("prompt", f"the prompt is already a complete {kind}")
    if spec.rhyme and not any(bool(tables.rhyme_mask(template.rhyme_bits[p]).any())
                              for p in range(PATTERN_COUNT) if template.patterns >> p & 1):
        raise FormError("prompt", f"model {loaded.name!r} has no character that rhymes with the prompt")
    full_prompt = f"{spec.title}\n{prompt}" if spec.title else prompt
    return PreparedForm(full_prompt, template.clone, spec)



def split_title(text: str) -> tuple[str, str]:
    """(title, verses) of a poem: the title line is a first line without ``，``/``。``."""
    first, newline, rest = text.partition("\n")
    if newline and COMMA not in first and PERIOD not in first:
        return first, rest
    return "", text


class TangKind:
    """The ``jueju`` and ``lushi`` kinds (:class:`~textgen.forms.base.FormKind`): the ``PoemForm`` object.

    ``{"kind": "jueju" | "lushi", "chars_per_line": 5 | 7, "acrostic"?, "title"?, "rhyme"?, "tones"?,
    "no_repeat"?, "keywords"?, "book"?, "first_verse_rhymes"?}`` (``rhyme`` and ``tones`` default by
    kind, :data:`KIND_DEFAULTS`; ``book`` is 平水韵 or 中华新韵, :mod:`textgen.forms.books`): the
    verses in the corpus layout (``，`` after odd verses, ``。`` after even ones, one couplet a
    line), ending with ``finish_reason: form_complete`` after the last ``。``.  The prompt fed to the
    model is ``title + "\\n" + prompt`` (the title line, as in the corpus); ``prompt`` is the
    beginning of the verses (it may also carry its own title line: a first line without ``，``/``。``
    followed by a line break).  A poem is never cut short: the row runs past ``max_new_chars`` until
    it is complete (at most 67 characters, a 7-character 律诗).
    """

    kinds = tuple(VERSES)
    spec_class = TangForm
    schema_title = "PoemForm"

    def schema_extras(self) -> dict[str, Any]:
        return {"x-defaults-by-kind": KIND_DEFAULTS}  # what null or a missing rhyme/tones means, per kind

    def parse(self, form: Mapping, loaded: LoadedModel) -> TangForm:
        return _tang_spec(form["kind"], form, loaded, tang_tables(loaded.tokenizer, _book(form)))

    def prepare(self, spec: TangForm, loaded: LoadedModel, prompt: str) -> PreparedForm:
        return _prepare(spec, loaded, prompt)

    def check(self, spec: TangForm, text: str, prompt: str = "") -> str | None:
        """``prompt`` is the prepared prompt (title line included)."""
        title, verses = split_title(prompt + text)
        if spec.title and title != spec.title:
            return "no title line"
        return check_poem(verses, spec)


FORM_KIND = TangKind()
