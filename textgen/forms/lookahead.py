"""Lookahead for Tang forms with ``tones``, ``no_repeat`` and ``keywords``: never a dead end.

A poem state is *feasible* when some completion obeys every rule.  :func:`feasible_combos`
decides it exactly enough to be safe: it answers yes only when it can name a *plan* that
completes the poem,

* a tonal pattern ``p`` still alive (平起/仄起, 首句入韵 or not, or the ones asked for);
* a rhyme group ``g`` still shared by the rhyme verses of ``p`` (with ``rhyme``), by the form's book
  (a character of several readings stands in each of its groups);
* a verse for each keyword not yet written, at most one keyword a verse, at a start where each
  of its characters fits the pattern, the rhyme, the acrostic head and ``no_repeat``
  (a bipartite matching of keywords to verses);
* and enough characters left for the other slots: with ``no_repeat``, at least as many unused
  rhyming level characters of ``g`` as rhyme slots remain, and for every kind of other slot
  (level, oblique, free) at least as many unused characters of that kind outside ``g``'s
  rhyme characters as such slots remain (Hall's condition then gives distinct characters for
  every slot); without ``no_repeat``, at least one of each.  Keyword characters and acrostic
  heads are counted in no pool (they have slots of their own).

The constraint allows a character only if the state after it is feasible, so if the first
state is feasible (checked when the form is prepared: a 422 otherwise) every later one is,
and the sampler always has a choice.  For the thousands of ordinary characters this is decided
per (pattern, group) from counts, not per character: an ordinary character changes a plan only
by using up one character of its class, which the pool margins absorb (at a non-rhyme slot a
rhyming character of ``g`` is excluded when ``g``'s margin is zero and no other group is left).
Keyword characters, the few that can start or continue a keyword, are tried one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from textgen.forms.books import XINYUN, RhymeBook, rhyme_book
from textgen.forms.matching import every_one_placed
from textgen.forms.tones import (
    FIRST_RHYMES,
    OBLIQUE_START,
    PATTERN_COUNT,
    PATTERNS,
    PING,
    ZE,
    ends_level,
    fits,
    required_tone,
)

if TYPE_CHECKING:
    from textgen.forms.tang import TangConstraint, TangForm, TangTables

TONE_SETS = 4  # tone bits 0..3 (none, 平, 仄, both)


def class_groups(book: RhymeBook) -> int:
    """Entries per tone set in the count tables: one per rhyme group, and 0 for no group."""
    return len(book.groups) + 1


def char_classes(book: RhymeBook, char: str) -> list[int]:
    """Indices of ``char``'s (tone set, rhyme group) classes in the count tables (one per group it is in)."""
    base = book.tones_of(char) * class_groups(book)
    bits = book.rhyme_bits(char)
    return [base + g + 1 for g in range(len(book.groups)) if bits >> g & 1] or [base]


def start_patterns(form: TangForm) -> int:
    """Bits of the patterns a form allows at the start (:mod:`textgen.forms.tones` numbers them)."""
    starts = {0, OBLIQUE_START} if form.tones is True else {PATTERNS[form.tones]} if form.tones else {0}
    firsts = {True: (FIRST_RHYMES,), False: (0,)}.get(form.first_verse_rhymes, (0, FIRST_RHYMES))
    if form.first_verse_rhymes is None and (not form.tones or form.book == XINYUN):
        firsts = (0,)  # no pattern, the first verse is simply free; 中华新韵 keeps 首句不入韵 (its rules before 平水韵)
    return sum(1 << (s | f) for s in starts for f in firsts)


def _matches(tone_set: int, required: int) -> bool:
    return required == 0 or bool(tone_set & required)


class PoemPlan:
    """What never changes while one form is sampled: slot kinds, keyword placements, pools."""

    def __init__(self, form: TangForm, tables: TangTables | None) -> None:
        self.form = form
        self.book = rhyme_book(form.book)
        self.class_groups = class_groups(self.book)
        L, verses = form.chars_per_line, form.verses
        self.L, self.verses = L, verses
        #: bits of the patterns allowed at the start (without ``tones``, only 首句入韵 or not matters)
        self.patterns = start_patterns(form)
        if form.tones and form.acrostic:  # a head stands where 孤平 may fix the tone (the first of 五言)
            for p in range(PATTERN_COUNT):
                if any(not fits(self.book.tones_of(head), required_tone(p, v, 0, L, form.fine_tones))
                       for v, head in enumerate(form.acrostic)):
                    self.patterns &= ~(1 << p)
        self.heads = form.acrostic
        self.keywords = tuple(form.keywords)
        self.keyword_chars = sorted({c for w in self.keywords for c in w})
        special = set(self.keyword_chars) | set(self.heads)
        self.special = special
        # rhyme characters are level under tones: the tone sets that count towards a group's pool
        self.rhyme_sets = [ts for ts in range(TONE_SETS) if not form.tones or ts & PING]
        self.suffix = {p: self._suffix(p) for p in range(PATTERN_COUNT)}
        self.placements = {w: self._placements(w) for w in self.keywords}
        #: keyword -> pattern -> verse -> (whether a start needs no rhyme group, the groups other starts need)
        self.verse_options = {w: {p: self._verse_options(w, p) for p in range(PATTERN_COUNT)} for w in self.keywords}
        self.tables = tables
        self.counts: list[int] = [0] * (TONE_SETS * self.class_groups)
        self.totals: list[int] = [0] * TONE_SETS
        self.exclude: Tensor | None = None
        if tables is not None:
            self.counts = list(tables.class_counts)
            self.totals = list(tables.tone_totals)
            for char in special:
                if char in tables.ids and tables.has_head(char):
                    for k in char_classes(self.book, char):
                        self.counts[k] -= 1
                    self.totals[self.book.tones_of(char)] -= 1
            exclude = torch.zeros_like(tables.han)
            for char in (self.keyword_chars + list(self.heads)) if form.no_repeat else []:
                if char in tables.ids:
                    exclude[tables.ids[char]] = True
            self.exclude = exclude  # under no_repeat the heads and keywords have their own slots

    def _suffix(self, pattern: int) -> list[tuple[int, int, int, int]]:
        """(rhyme, 平, 仄, free) slots from each flat slot index (verse * L + position) on."""
        form, L = self.form, self.L
        kinds = []
        for verse in range(self.verses):
            for position in range(L):
                if self.heads and position == 0:
                    kinds.append(None)  # the acrostic head has its own slot
                elif form.rhyme and ends_level(pattern, verse) and position == L - 1:
                    kinds.append(0)
                else:
                    tone = required_tone(pattern, verse, position, L, form.fine_tones) if form.tones else 0
                    kinds.append({PING: 1, ZE: 2, 0: 3}[tone])
        out = [(0, 0, 0, 0)] * (len(kinds) + 1)
        for i in range(len(kinds) - 1, -1, -1):
            counts = list(out[i + 1])
            if kinds[i] is not None:
                counts[kinds[i]] += 1
            out[i] = tuple(counts)
        return out

    def _verse_options(self, word: str, pattern: int) -> list[tuple[bool, frozenset[int]]]:
        options: list[tuple[bool, set[int]]] = [(False, set()) for _ in range(self.verses)]
        for verse, _, patterns, group_bits in self.placements[word]:
            if patterns >> pattern & 1:
                free, groups = options[verse]
                chosen = {g for g in range(len(self.book.groups)) if group_bits >> g & 1} if group_bits >= 0 else set()
                options[verse] = (free or group_bits < 0, groups | chosen)
        return [(free, frozenset(groups)) for free, groups in options]

    def _placements(self, word: str) -> list[tuple[int, int, int, int]]:
        """(verse, start, pattern bit, rhyme group bits or -1) of each place ``word`` may stand
        (one entry per pattern, whose rhyme verses differ in the first verse)."""
        form, L, book = self.form, self.L, self.book
        every = (1 << len(book.groups)) - 1
        out = []
        for verse in range(self.verses):
            for start in range(L - len(word) + 1):
                for p in range(PATTERN_COUNT):
                    ok, group_bits = True, -1
                    for j, char in enumerate(word):
                        position = start + j
                        if self.heads and position == 0 and char != self.heads[verse]:
                            ok = False
                        if form.no_repeat and char in self.heads and not (position == 0 and self.heads[verse] == char):
                            ok = False
                        if form.tones and not fits(book.tones_of(char),
                                                   required_tone(p, verse, position, L, form.fine_tones)):
                            ok = False
                        if form.rhyme and position == L - 1:
                            if ends_level(p, verse):
                                group_bits = book.rhyme_bits(char)
                                ok = ok and group_bits != 0
                            elif verse == 0 and form.first_verse_rhymes is False:
                                group_bits = every & ~book.rhyme_bits(char)
                                ok = ok and group_bits != 0
                    if ok:
                        out.append((verse, start, 1 << p, group_bits))
        return out


# --------------------------------------------------------------------------- feasibility
def feasible_combos(state: TangConstraint, generic: bool = False, first: bool = False) -> list[tuple[int, int]]:
    """The (pattern, rhyme group or -1) plans that complete ``state``'s poem.

    ``generic``: the plans that still hold after an ordinary (non-keyword) character is written at
    the current slot (the caller then masks the characters by tone and group).  ``first``: stop
    at the first plan found.
    """
    plan, form = state.plan, state.form
    if form.no_repeat and any(h in state.used for h in plan.heads[state.verse + (state.position > 0):]):
        return []
    index = state.slot_index()
    out = []
    for p in range(PATTERN_COUNT):
        if not state.patterns >> p & 1:
            continue
        bits = state.rhyme_bits[p]
        groups = [g for g in range(len(plan.book.groups)) if bits >> g & 1] if form.rhyme else [-1]
        slots = plan.suffix[p][index]
        verses = _keyword_verses(state, p, generic) if state.pending else None
        for g in groups:
            if not _pools_hold(state, g, slots):
                continue
            if verses is not None and not _matching(verses, g):
                continue
            out.append((p, g))
            if first:
                return out
    return out


def rhyme_margin(state: TangConstraint, group: int) -> int:
    """Unused rhyming characters of ``group`` beyond the rhyme slots still to write (the most any pattern has)."""
    index = state.slot_index()
    slots = max(state.plan.suffix[p][index][0] for p in range(PATTERN_COUNT))
    return _rhyme_pool(state, group) - slots


def _rhyme_pool(state: TangConstraint, group: int) -> int:
    counts, width = state.counts, state.plan.class_groups
    return sum(counts[ts * width + group + 1] for ts in state.plan.rhyme_sets)


def _pools_hold(state: TangConstraint, group: int, slots: tuple[int, int, int, int]) -> bool:
    rhyme, ping, ze, free = slots
    others = ping + ze + free
    no_repeat = state.form.no_repeat
    if group >= 0 and rhyme and _rhyme_pool(state, group) < (rhyme if no_repeat else 1):
        return False
    counts, totals = state.counts, state.totals
    for required, n in ((PING, ping), (ZE, ze), (0, free)):
        if not n:
            continue
        pool = 0
        for ts in range(TONE_SETS):
            if _matches(ts, required):
                pool += totals[ts]
                if group >= 0 and ts in state.plan.rhyme_sets:
                    pool -= counts[ts * state.plan.class_groups + group + 1]
        if pool < (others if no_repeat else 1):
            return False
    return True


def _keyword_verses(state: TangConstraint, pattern: int, generic: bool) -> list[tuple[set, dict]]:
    """For each keyword still to write: (verses it may go to whatever the group, {group: more verses})."""
    out = []
    verse, position, L = state.verse, state.position, state.plan.L
    no_repeat = state.form.no_repeat
    for word in state.pending:
        base: set[int] = set()
        by_group: dict[int, set[int]] = {}
        if not (no_repeat and any(c in state.used for c in word)):  # later verses: the static options
            for v, (free, groups) in enumerate(state.plan.verse_options[word][pattern]):
                if v > verse and v not in state.keyword_verses:
                    if free:
                        base.add(v)
                    for group in groups:
                        by_group.setdefault(group, set()).add(v)
        if position < L and verse not in state.keyword_verses:
            for v, start, patterns, group_bits in state.plan.placements[word]:
                if v != verse or not patterns >> pattern & 1:
                    continue
                unwritten = word
                if start < position or (start == position and generic):
                    if generic or start + len(word) <= position or \
                            state.verse_text[start:position] != word[:position - start]:
                        continue
                    unwritten = word[position - start:]
                if start <= position and _completes_another(state, word, start):
                    continue
                if no_repeat and any(c in state.used for c in unwritten):
                    continue
                if group_bits < 0:
                    base.add(v)
                for group in range(len(state.plan.book.groups)) if group_bits >= 0 else ():
                    if group_bits >> group & 1:
                        by_group.setdefault(group, set()).add(v)
        out.append((base, by_group))
    return out


def _completes_another(state: TangConstraint, word: str, start: int) -> bool:
    """Whether finishing ``word`` at ``start`` of the current verse would write another pending
    keyword on the way (a second keyword in one verse, which the layout refuses)."""
    text = state.verse_text[:start] + word
    position = state.position
    return any(other != word and text.find(other, max(0, position - len(other) + 1)) >= 0
               for other in state.pending)


def _matching(verses: list[tuple[set, dict]], group: int) -> bool:
    """Whether every keyword gets a verse of its own (augmenting paths; a handful of keywords)."""
    return every_one_placed([base | by_group.get(group, set()) for base, by_group in verses])


def rhyme_chars(tables: TangTables, group: int, tones: bool) -> Tensor:
    """The characters that may end an even verse of ``group`` (level ones under ``tones``)."""
    mask = tables.group_masks[group]
    return mask & tables.tone_masks[PING] if tones else mask

