"""Lookahead for Tang forms with ``tones``, ``no_repeat`` and ``keywords``: never a dead end.

A poem state is *feasible* when some completion obeys every rule.  :func:`feasible_combos`
decides it exactly enough to be safe: it answers yes only when it can name a *plan* that
completes the poem,

* a tonal pattern ``p`` still alive (平起/仄起, or the one given);
* a rhyme group ``g`` still shared by the even verses (with ``rhyme``);
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

from textgen.forms.rhyme import GROUPS, rhyme_group
from textgen.forms.tones import PATTERNS, PING, ZE, fits, required_tone, tones_of

if TYPE_CHECKING:
    from textgen.forms.tang import TangConstraint, TangForm, TangTables

TONE_SETS = 4  # tone bits 0..3 (none, 平, 仄, both)
CLASS_GROUPS = len(GROUPS) + 1  # rhyme group + 1 (0: no group)


def char_class(char: str) -> int:
    """Index of ``char``'s (tone set, rhyme group) class in the count tables."""
    return tones_of(char) * CLASS_GROUPS + rhyme_group(char) + 1


def _matches(tone_set: int, required: int) -> bool:
    return required == 0 or bool(tone_set & required)


class PoemPlan:
    """What never changes while one form is sampled: slot kinds, keyword placements, pools."""

    def __init__(self, form: TangForm, tables: TangTables | None) -> None:
        self.form = form
        L, verses = form.chars_per_line, form.verses
        self.L, self.verses = L, verses
        #: bits of the tonal patterns allowed at the start (one dummy pattern without ``tones``)
        self.patterns = 0b11 if form.tones is True else 1 << PATTERNS[form.tones] if form.tones else 0b01
        self.heads = form.acrostic
        self.keywords = tuple(form.keywords)
        self.keyword_chars = sorted({c for w in self.keywords for c in w})
        special = set(self.keyword_chars) | set(self.heads)
        self.special = special
        # rhyme characters are level under tones: the tone sets that count towards a group's pool
        self.rhyme_sets = [ts for ts in range(TONE_SETS) if not form.tones or ts & PING]
        self.suffix = {p: self._suffix(p) for p in (0, 1)}
        self.placements = {w: self._placements(w) for w in self.keywords}
        #: keyword -> pattern -> verse -> (whether a start needs no rhyme group, the groups other starts need)
        self.verse_options = {w: {p: self._verse_options(w, p) for p in (0, 1)} for w in self.keywords}
        self.tables = tables
        self.counts: list[int] = [0] * (TONE_SETS * CLASS_GROUPS)
        self.exclude: Tensor | None = None
        if tables is not None:
            self.counts = list(tables.class_counts)
            for char in special:
                if char in tables.ids and tables.has_head(char):
                    self.counts[char_class(char)] -= 1
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
                elif form.rhyme and verse % 2 == 1 and position == L - 1:
                    kinds.append(0)
                else:
                    tone = required_tone(pattern, verse, position, L) if form.tones else 0
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
        for verse, _, patterns, group in self.placements[word]:
            if patterns >> pattern & 1:
                free, groups = options[verse]
                options[verse] = (free or group < 0, groups | ({group} if group >= 0 else set()))
        return [(free, frozenset(groups)) for free, groups in options]

    def _placements(self, word: str) -> list[tuple[int, int, int, int]]:
        """(verse, start, pattern bits, rhyme group or -1) of each place ``word`` may stand."""
        form, L = self.form, self.L
        out = []
        for verse in range(self.verses):
            for start in range(L - len(word) + 1):
                patterns, group = 0b11, -1
                for j, char in enumerate(word):
                    position = start + j
                    if self.heads and position == 0 and char != self.heads[verse]:
                        patterns = 0
                    if form.no_repeat and char in self.heads and not (position == 0 and self.heads[verse] == char):
                        patterns = 0
                    if form.tones:
                        for p in (0, 1):
                            if not fits(tones_of(char), required_tone(p, verse, position, L)):
                                patterns &= ~(1 << p)
                    if form.rhyme and verse % 2 == 1 and position == L - 1:
                        group = rhyme_group(char)
                        if group < 0:
                            patterns = 0
                if patterns:
                    out.append((verse, start, patterns, group))
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
    groups = [g for g in range(len(GROUPS)) if state.rhyme_bits >> g & 1] if form.rhyme else [-1]
    out = []
    for p in (0, 1):
        if not state.patterns >> p & 1:
            continue
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
    """Unused rhyming characters of ``group`` beyond the rhyme slots still to write (any pattern)."""
    slots = state.plan.suffix[0][state.slot_index()][0]
    return _rhyme_pool(state, group) - slots


def _rhyme_pool(state: TangConstraint, group: int) -> int:
    counts = state.counts
    return sum(counts[ts * CLASS_GROUPS + group + 1] for ts in state.plan.rhyme_sets)


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
                    pool -= counts[ts * CLASS_GROUPS + group + 1]
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
            for v, start, patterns, group in state.plan.placements[word]:
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
                (base if group < 0 else by_group.setdefault(group, set())).add(v)
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
    options = [base | by_group.get(group, set()) for base, by_group in verses]
    owner: dict[int, int] = {}

    def place(k: int, seen: set[int]) -> bool:
        for v in options[k]:
            if v in seen:
                continue
            seen.add(v)
            if v not in owner or place(owner[v], seen):
                owner[v] = k
                return True
        return False

    return all(place(k, set()) for k in range(len(options)))


def rhyme_chars(tables: TangTables, group: int, tones: bool) -> Tensor:
    """The characters that may end an even verse of ``group`` (level ones under ``tones``)."""
    mask = tables.group_masks[group]
    return mask & tables.tone_masks[PING] if tones else mask

