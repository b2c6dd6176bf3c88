"""The ``ci`` form's constraint: a tune's shape, its rhymes in 词林正韵 and its fixed tones, by masking.

The text is written as the corpus writes a ci: one line per sentence group ending ``。``, ``\\n``
between lines, nothing after the last ``。``; inside a line the sentences end with one of
:data:`~textgen.forms.ci.tunebook.INTERNAL_MARKS`.  :class:`CiConstraint` walks the shape's
steps (:class:`CiPlan`): a Chinese character of the vocabulary (a single-character piece), with
the tune's tone where it fixes one; at a rhyming sentence end, a character whose reading of that
tone is in a 部 the group's ends so far all share; then the mark, the line break.

**Lookahead.**  A state is kept only if it is *feasible*, a condition that a completion exists
and that some next character keeps:

* every rhyme group still to write has a 部 ``b`` among those it may still take with, for each
  tone its remaining ends ask for, at least ``need`` characters of ``b`` with a reading of that
  tone in the vocabulary;
* for each tone the other remaining positions ask for, at least ``need`` characters of that tone;
* every keyword still to write has a sentence of its own where it fits (a bipartite matching:
  placements whose characters keep the fixed tones and cover no rhyming end).

``need`` is 1; under ``no_repeat`` it is the number of characters still to write, and the counts
leave out the characters already written and the keywords' characters.  Then any order of
filling succeeds (each position has at least ``need`` candidates, the others take at most
``need - 1``), and writing one character lowers ``need`` by one and each count by at most one, so
the condition holds after it: the sampler always has a choice, at any temperature.  Characters
that may begin or continue a keyword are tried one by one; all others are masked by class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from textgen.forms.ci.cilin import BOTH, BU_COUNT, bu_names, cilin
from textgen.forms.ci.tunebook import FREE, INTERNAL_MARKS, LEVEL, LINE_END, Variant
from textgen.forms.han import HanPieces, is_han
from textgen.forms.matching import every_one_placed
from textgen.forms.tones import PING, ZE
from textgen.sampling import Constraint
from textgen.tokenizer import CharTokenizer, per_tokenizer

NEWLINE = "\n"
ALL_BU = (1 << BU_COUNT) - 1
MODES = (PING, ZE, BOTH)
"""What a position asks of a character's tone: a level reading, an oblique one, or any."""
_MODE_NAMES = {PING: "平", ZE: "仄", BOTH: "any"}


class ShapeError(ValueError):
    """A character the tune's shape, rhyme or tones do not allow where it stands (says what was expected)."""


class CiTables(HanPieces):
    """Per-tokenizer masks and counts: Chinese pieces by tone and by 部 (词林正韵)."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        super().__init__(tokenizer)
        book = cilin()
        V = tokenizer.vocab_size
        han = self.han
        tone = {m: torch.zeros(V, dtype=torch.bool) for m in (PING, ZE)}
        bu = {m: torch.zeros((BU_COUNT, V), dtype=torch.bool) for m in MODES}
        #: unique Chinese characters per tone mode, and per (mode, 部)
        self.tone_counts = {m: 0 for m in MODES}
        self.bu_counts = {m: [0] * BU_COUNT for m in MODES}
        for i, piece, first in self.han_pieces:
            for m in MODES:
                bits = book.bu_bits(piece, m)
                for b in range(BU_COUNT):
                    if bits >> b & 1:
                        bu[m][b, i] = True
                        self.bu_counts[m][b] += first
            tones = book.tones_of(piece)
            for m in (PING, ZE):
                if tones & m:
                    tone[m][i] = True
            for m in MODES:
                self.tone_counts[m] += first and (m == BOTH or bool(tones & m))
        #: the characters a position of each mode allows (BOTH: every Chinese piece)
        self.tone_masks = {PING: tone[PING], ZE: tone[ZE], BOTH: han}
        #: (19, V) per mode: the Chinese pieces with a reading of that mode in each 部
        self.bu_masks = bu
        marks = torch.zeros(V, dtype=torch.bool)
        for mark in INTERNAL_MARKS:
            if mark in self.ids:
                marks[self.ids[mark]] = True
        self.internal_marks = marks

    def layout_lacks(self) -> list[str]:
        """What the vocabulary lacks for a ci: ``。``, the line break, an internal mark, Chinese characters."""
        lacks = [repr(c) for c in (LINE_END, NEWLINE) if c not in self.ids]
        if not bool(self.internal_marks.any()):
            lacks.append("an internal mark (" + INTERNAL_MARKS + ")")
        if not bool(self.han.any()):
            lacks.append("Chinese characters")
        return lacks


ci_tables = per_tokenizer(CiTables)


@dataclass(frozen=True)
class Step:
    """One character of the shape: a Chinese character (``what == "han"``), a mark or a line break."""

    what: str
    sentence: int
    position: int = 0
    mode: int = BOTH
    group: int = -1


@dataclass(frozen=True)
class CiRules:
    """The rules a constraint enforces on top of the shape."""

    rhyme: bool = True
    tones: bool = True
    no_repeat: bool = False
    keywords: tuple[str, ...] = ()


class CiPlan:
    """What never changes while one form is sampled: the steps, what remains after each, the
    keywords' placements."""

    def __init__(self, variant: Variant, rules: CiRules) -> None:
        self.variant, self.rules = variant, rules
        sentences = variant.sentences
        self.steps: list[Step] = []
        self.sentence_starts: list[int] = []  # han index of each sentence's first character
        han = 0
        for s, sentence in enumerate(sentences):
            self.sentence_starts.append(han)
            for i, tone in enumerate(sentence.tones):
                mode = (PING if tone == LEVEL else ZE) if rules.tones and tone != FREE else BOTH
                group = sentence.rhyme if rules.rhyme and i == sentence.length - 1 else -1
                self.steps.append(Step("han", s, i, mode, group))
                han += 1
            self.steps.append(Step("mark", s, sentence.length))
            if sentence.line_end and s < len(sentences) - 1:
                self.steps.append(Step(NEWLINE, s, sentence.length + 1))
        self.groups = variant.rhyme_groups if rules.rhyme else 0
        n = len(self.steps)
        # from each step on: Chinese characters left, the modes each group's ends ask, the others' modes
        self.han_after = [0] * (n + 1)
        self.group_modes: list[tuple[frozenset[int], ...]] = [tuple(frozenset() for _ in range(self.groups))] * (n + 1)
        self.free_modes: list[frozenset[int]] = [frozenset()] * (n + 1)
        for k in range(n - 1, -1, -1):
            step = self.steps[k]
            self.han_after[k] = self.han_after[k + 1] + (step.what == "han")
            groups, free = list(self.group_modes[k + 1]), self.free_modes[k + 1]
            if step.what == "han":
                if step.group >= 0:
                    groups[step.group] = groups[step.group] | {step.mode}
                else:
                    free = free | {step.mode}
            self.group_modes[k], self.free_modes[k] = tuple(groups), free
        self.keyword_chars = frozenset(c for w in rules.keywords for c in w)
        self.placements = {w: self._placements(w) for w in rules.keywords}

    def _placements(self, word: str) -> dict[int, list[int]]:
        """sentence -> the starts where ``word`` fits: the fixed tones kept, no rhyming end covered."""
        book = cilin()
        out: dict[int, list[int]] = {}
        for s, sentence in enumerate(self.variant.sentences):
            for start in range(sentence.length - len(word) + 1):
                ok = True
                for j, char in enumerate(word):
                    step = self.steps[self._han_step(s, start + j)]
                    if step.group >= 0 or (step.mode != BOTH and not book.tones_of(char) & step.mode):
                        ok = False
                if ok:
                    out.setdefault(s, []).append(start)
        return out

    def _han_step(self, sentence: int, position: int) -> int:
        """The step index of a sentence's character (steps: its characters, its mark, maybe a line break)."""
        k = self.sentence_starts[sentence] + position
        for s in range(sentence):  # the marks and line breaks before it
            k += 1 + (self.variant.sentences[s].line_end and s < len(self.variant.sentences) - 1)
        return k


class CiConstraint(Constraint):
    """Masks one sample's choices so that the text completes a ci of one tune's shape.

    ``tables`` None: a checker only (:meth:`feed` and :meth:`is_complete`), without masks or counts.
    """

    def __init__(self, plan: CiPlan, tables: CiTables | None) -> None:
        self.plan, self.tables, self.rules = plan, tables, plan.rules
        self.book = cilin()
        self.step = 0
        self.bits = [ALL_BU] * plan.groups
        self.used: set[str] = set()
        self.sentence_text = ""
        self.pending: tuple[str, ...] = tuple(self.rules.keywords)
        self.tone_counts = dict(tables.tone_counts) if tables is not None else {}
        self.bu_counts = {m: list(c) for m, c in tables.bu_counts.items()} if tables is not None else {}
        self.used_mask = None
        self.exclude = None
        if tables is not None and self.rules.no_repeat:
            self.used_mask = torch.zeros_like(tables.han)
            self.exclude = torch.zeros_like(tables.han)
            for char in plan.keyword_chars:  # counted in no pool: they stand only in their keyword
                if tables.has_head(char):
                    self.exclude[tables.ids[char]] = True
                    self._take(char)

    def clone(self) -> CiConstraint:
        """An independent copy (the per-sample constraint made from a prepared template)."""
        other = self._probe()
        if self.used_mask is not None:
            other.used_mask = self.used_mask.clone()
        return other

    def _probe(self) -> CiConstraint:
        other = copy.copy(self)
        other.bits, other.used = list(self.bits), set(self.used)
        other.tone_counts = dict(self.tone_counts)
        other.bu_counts = {m: list(c) for m, c in self.bu_counts.items()}
        other.used_mask = None  # a probe leaves the (V,) mask of used characters alone
        return other

    def _take(self, char: str) -> None:
        """Count ``char`` out of the pools (no_repeat)."""
        tones = self.book.tones_of(char)
        for m in MODES:
            if m == BOTH or tones & m:
                self.tone_counts[m] -= 1
            bits = self.book.bu_bits(char, m)
            for b in range(BU_COUNT):
                if bits >> b & 1:
                    self.bu_counts[m][b] -= 1

    # ----------------------------------------------------------------- the shape
    def where(self) -> str:
        step = self.plan.steps[min(self.step, len(self.plan.steps) - 1)]
        return f"sentence {step.sentence + 1}, character {step.position + 1}"

    def expected(self) -> str:
        """What comes next: "han", "mark", "\\n" or "" (complete)."""
        if self.step >= len(self.plan.steps):
            return ""
        return self.plan.steps[self.step].what

    def feed(self, char: str) -> None:
        """Advance by one character; raises :class:`ShapeError` if the form forbids it."""
        if self.step >= len(self.plan.steps):
            raise ShapeError(f"the ci is already complete, got {char!r}")
        step = self.plan.steps[self.step]
        where = self.where()
        sentence = self.plan.variant.sentences[step.sentence]
        if step.what == "mark":
            wanted = LINE_END if sentence.line_end else INTERNAL_MARKS
            if char not in wanted:
                raise ShapeError(f"{where}: the sentence has {sentence.length} characters, then "
                                 f"{'the line ends with ' + repr(LINE_END) if sentence.line_end else 'one of ' + repr(INTERNAL_MARKS)}"
                                 f", got {char!r}")
            self.step += 1
            self.sentence_text = ""
            return
        if step.what == NEWLINE:
            if char != NEWLINE:
                raise ShapeError(f"{where}: expected a line break after {LINE_END!r}, got {char!r}")
            self.step += 1
            return
        if not is_han(char):
            raise ShapeError(f"{where}: expected a Chinese character (the sentence has {sentence.length}), got {char!r}")
        if step.mode != BOTH and not self.book.tones_of(char) & step.mode:
            raise ShapeError(f"{where}: {char!r} is not {_MODE_NAMES[step.mode]} (the tune fixes the tone here)")
        if step.group >= 0:
            kept = self.bits[step.group] & self.book.bu_bits(char, step.mode)
            if not kept:
                raise ShapeError(f"{where}: {char!r} does not rhyme with the group's ends before it "
                                 f"(词林正韵 {', '.join(bu_names(self.bits[step.group]))[:60]})")
            self.bits[step.group] = kept
        if self.rules.no_repeat:
            if char in self.used:
                raise ShapeError(f"{where}: {char!r} is already in the ci (no_repeat)")
            if self.tables is not None and char not in self.plan.keyword_chars and self.tables.has_head(char):
                self._take(char)
            if self.used_mask is not None and char in self.tables.ids:
                self.used_mask[self.tables.ids[char]] = True
        self.used.add(char)
        self.sentence_text += char
        if self.pending:
            self.pending = tuple(w for w in self.pending if not self.sentence_text.endswith(w))
        self.step += 1

    # ----------------------------------------------------------------- feasibility
    def _need(self) -> int:
        return self.plan.han_after[self.step] if self.rules.no_repeat else 1

    def _good_bu(self, group: int, need: int) -> int:
        """The 部 (bits) group ``group`` may still take with enough characters for each of its ends left."""
        modes = self.plan.group_modes[self.step][group]
        good = 0
        for b in range(BU_COUNT):
            if self.bits[group] >> b & 1 and all(self.bu_counts[m][b] >= need for m in modes):
                good |= 1 << b
        return good

    def feasible(self, generic: bool = False) -> bool:
        """Whether the state is feasible (see the module's docstring); ``generic``: after an ordinary
        (non-keyword) character at the current position."""
        need = self._need()
        for g in range(self.plan.groups):
            if self.plan.group_modes[self.step][g] and not self._good_bu(g, need):
                return False
        if any(self.tone_counts[m] < need for m in self.plan.free_modes[self.step]):
            return False
        return not self.pending or self._keywords_fit(generic)

    def _keywords_fit(self, generic: bool) -> bool:
        """Every pending keyword gets a sentence of its own (augmenting paths over a handful)."""
        if self.step >= len(self.plan.steps):
            return False
        step = self.plan.steps[self.step]
        current = step.sentence if step.what == "han" else step.sentence + 1
        position = step.position if step.what == "han" else 0
        text = self.sentence_text if step.what == "han" else ""
        options = []
        for word in self.pending:
            fresh = not (self.rules.no_repeat and any(c in self.used for c in word))
            sentences = set()
            for s, starts in self.plan.placements[word].items():
                if s > current and fresh:
                    sentences.add(s)
                elif s == current:
                    for start in starts:
                        if start > position or (start == position and not generic):
                            if fresh:
                                sentences.add(s)
                        elif not generic and start + len(word) > position and \
                                text[start:position] == word[:position - start]:
                            rest = word[position - start:]
                            if not (self.rules.no_repeat and any(c in self.used for c in rest)):
                                sentences.add(s)
            options.append(sentences)
        return every_one_placed(options)

    # ----------------------------------------------------------------- the Constraint methods
    def allowed(self) -> Tensor | None:
        tables = self.tables
        what = self.expected()
        if what == "":
            return None
        if what == NEWLINE:
            return tables.onehot(NEWLINE)
        if what == "mark":
            sentence = self.plan.variant.sentences[self.plan.steps[self.step].sentence]
            return tables.onehot(LINE_END) if sentence.line_end else tables.internal_marks
        step = self.plan.steps[self.step]
        mask = tables.tone_masks[step.mode]
        if step.group >= 0:
            good = self._good_bu(step.group, self._need())
            chosen = [b for b in range(BU_COUNT) if good >> b & 1]
            mask = mask & tables.bu_masks[step.mode][chosen].any(dim=0)
        if self.used_mask is not None:
            mask = mask & ~self.used_mask & ~self.exclude
        if self.pending and not self._keywords_fit(generic=True):
            mask = torch.zeros_like(mask)
        if self.pending:
            mask = mask.clone()
            for char in self._keyword_steps():
                if not tables.has_head(char):
                    continue
                probe = self._probe()
                try:
                    probe.feed(char)
                    ok = probe.feasible()
                except ShapeError:
                    ok = False
                mask[tables.ids[char]] = ok
        return mask

    def _keyword_steps(self) -> set[str]:
        """The characters that would begin or continue a pending keyword here (tried one by one)."""
        position = len(self.sentence_text)
        steps = set()
        for word in self.pending:
            for start in range(max(0, position - len(word) + 1), position + 1):
                if self.sentence_text[start:position] == word[:position - start]:
                    steps.add(word[position - start])
        return steps

    def advance(self, token: int, text: str) -> None:
        for char in text:
            self.feed(char)

    def is_complete(self) -> bool:
        return self.step >= len(self.plan.steps)

    def must_continue(self) -> bool:
        """A ci is never cut short: the row runs past ``max_new_chars`` until it is complete."""
        return not self.is_complete()
