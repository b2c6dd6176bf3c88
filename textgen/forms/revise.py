"""Revising one verse of a finished poem (the Jiuge workflow): alternatives that keep every rule.

    plan = prepare_revision({"kind": "jueju", "chars_per_line": 7, "title": "春日"}, loaded, poem, verse=3)
    drawn = generate(loaded, plan.prompt, SamplingParams(n=16), constraint=lambda i: plan.new_constraint())
    candidates = rank_candidates(loaded, plan, [s.text for s in drawn], n=4)

The verses before the one revised are the prompt the candidates are drawn from.  The constraint
is the form's own (:class:`~textgen.forms.tang.TangConstraint`) after those verses, narrowed by
the verses after it, which stay: the tonal patterns they keep (粘 and 对 with the neighbours), the
rhyme groups their rhyme verses share, their characters (under ``no_repeat``), the keywords they
hold (the others must go into this verse, and no keyword may move into them) and the acrostic
heads.  So every candidate keeps every rule together with the verses kept.  The candidates are then
ranked by the model's log-probability of the whole poem, the verses after them included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from textgen.evaluation import continuations_logprobs
from textgen.export import LoadedModel
from textgen.forms.base import FormError
from textgen.forms.tang import (
    COMMA,
    NEWLINE,
    PERIOD,
    LayoutError,
    TangConstraint,
    TangForm,
    check_poem,
    is_han,
    rules_one_by_one,
    tang_spec,
    tang_tables,
)
from textgen.forms.tones import PATTERN_COUNT, ends_level, fits, required_tone
from textgen.sampling import Constraint

DRAWS_PER_CANDIDATE = 4
"""Verses drawn for each candidate asked for; the most likely distinct ones are kept."""


@dataclass(frozen=True)
class Candidate:
    """One alternative verse, the whole revised poem (verses only), and the model's log-probability
    of that poem after its title line (nats)."""

    verse: str
    poem: str
    logprob: float


@dataclass
class RevisionPlan:
    """What drawing and ranking the candidates for one verse need."""

    form: TangForm
    prompt: str
    """What the model reads before the verse: the title line and the verses before it."""
    title_line: str
    """The title line the poem is scored after ("" or ``title + "\\n"``)."""
    head: str
    """The verses before the one revised, as written (punctuation and line breaks included)."""
    tail: str
    """What follows the revised verse's characters: its punctuation and the verses after it."""
    original: str
    """The verse being replaced."""
    new_constraint: Callable[[], Constraint]


class VerseConstraint(Constraint):
    """The form's constraint for one verse: complete when the verse's characters are written."""

    def __init__(self, inner: TangConstraint) -> None:
        self.inner = inner

    def allowed(self) -> Tensor | None:
        return self.inner.allowed()

    def advance(self, token: int, text: str) -> None:
        self.inner.advance(token, text)

    def is_complete(self) -> bool:
        return self.inner.position >= self.inner.form.chars_per_line

    def must_continue(self) -> bool:
        return not self.is_complete()


def split_verses(poem: str, chars: int) -> tuple[str, list[str]]:
    """(title, verses) of a poem as generate returns it (a title line is optional; line breaks and
    spaces between couplets are not required)."""
    title, newline, rest = poem.partition(NEWLINE)
    if not (newline and COMMA not in title and PERIOD not in title):
        title, rest = "", poem
    text = "".join(rest.split())
    verses, current = [], ""
    for char in text:
        if char in (COMMA, PERIOD):
            verses.append(current)
            current = ""
        else:
            current += char
    if current:
        raise FormError("poem", f"`poem` must end with {PERIOD!r}: it ends with {current!r}")
    for i, verse in enumerate(verses):
        if len(verse) != chars or not all(is_han(c) for c in verse):
            raise FormError("poem", f"`poem`: verse {i + 1} ({verse!r}) is not {chars} Chinese characters")
    return title.strip(), verses


def layout(verses: list[str]) -> str:
    """Verses written as the corpus writes a poem (``，`` and ``。`` alternate, a couplet a line)."""
    lines = [f"{verses[i]}{COMMA}{verses[i + 1]}{PERIOD}" for i in range(0, len(verses) - 1, 2)]
    return NEWLINE.join(lines)


def _narrow_by_kept(constraint: TangConstraint, after: list[str], first: int) -> str | None:
    """Narrow ``constraint`` (at the start of verse ``first - 1``) by the verses ``after`` it, which
    stay; the rule they leave no room for, or None."""
    form, book = constraint.form, constraint.book
    L = form.chars_per_line
    alive = 0
    broken = "form.tones" if form.tones else "form.rhyme"
    for p in range(PATTERN_COUNT):
        if not constraint.patterns >> p & 1:
            continue
        bits, ok = constraint.rhyme_bits[p], True
        for offset, verse in enumerate(after):
            v = first + offset
            for i, char in enumerate(verse):
                if form.tones and not fits(book.tones_of(char), required_tone(p, v, i, L, form.fine_tones)):
                    ok = False
            if form.rhyme and ends_level(p, v):
                bits &= book.rhyme_bits(verse[-1])
        if ok and (bits or not form.rhyme):
            constraint.rhyme_bits[p] = bits
            alive |= 1 << p
    if not alive:
        return broken
    constraint.patterns = alive
    kept = "".join(after)
    if form.no_repeat:
        for char in kept:
            if char in constraint.used or kept.count(char) > 1:
                return "form.no_repeat"
        for offset, verse in enumerate(after):
            for i, char in enumerate(verse):
                if not (form.acrostic and i == 0):  # a head is kept out of other slots by the plan already
                    constraint.feed_used(char)
    if constraint.plan is not None:
        pending = list(constraint.pending)
        for offset, verse in enumerate(after):
            held = [w for w in pending if w in verse]
            if len(held) > 1:
                return "form.keywords"
            if held:
                pending.remove(held[0])
        constraint.pending = tuple(pending)
        constraint.keyword_verses = constraint.keyword_verses | set(range(first, form.verses))
    return None


def prepare_revision(form: Mapping, loaded: LoadedModel, poem: str, verse: int) -> RevisionPlan:
    """Check ``poem`` against ``form`` and plan the candidates for its verse number ``verse`` (1-based);
    :class:`~textgen.forms.FormError` naming the field or rule that cannot be kept."""
    if not isinstance(poem, str) or not poem.strip():
        raise FormError("poem", "`poem` must be the text of a complete poem")
    spec = tang_spec(form, loaded)
    title, verses = split_verses(poem, spec.chars_per_line)
    if len(verses) != spec.verses:
        raise FormError("poem", f"`poem` has {len(verses)} verses, a {spec.kind} has {spec.verses}")
    if isinstance(verse, bool) or not isinstance(verse, int) or not 1 <= verse <= spec.verses:
        raise FormError("verse", f"`verse` must be a verse number from 1 to {spec.verses}, got {verse!r}")
    if title and spec.title and title != spec.title:
        raise FormError("poem", f"`poem` is titled {title!r}, `form.title` is {spec.title!r}")
    title = title or spec.title
    tables = tang_tables(loaded.tokenizer, spec.book)
    target = verse - 1
    whole = layout(verses)
    cut = target * (spec.chars_per_line + 1) + target // 2  # where the verse starts in the laid-out text
    head, tail = whole[:cut], whole[cut + spec.chars_per_line:]
    # The rules one by one, as a prepared form does, so that a 422 names the first that cannot hold.
    template: TangConstraint | None = None
    for rule, trial in rules_one_by_one(spec):
        template = TangConstraint(trial, tables)
        try:
            for char in head:
                template.feed(char)
            if trial.acrostic and any(v[0] != h for v, h in zip(verses[target + 1:], trial.acrostic[target + 1:])):
                raise LayoutError("the verses after it do not begin with the acrostic heads")
        except LayoutError as error:
            raise FormError(f"form.{rule}" if rule else "poem",
                            f"the verses kept break `form.{rule or 'kind'}`: {error}") from error
        broken = _narrow_by_kept(template, verses[target + 1:], target + 1)
        if broken:
            raise FormError(broken, f"`{broken}` cannot be kept with the verses kept (verses {verse + 1}-"
                                    f"{spec.verses} of the poem)")
        if not template.feasible() or (trial.rhyme and not any(
                bool(tables.rhyme_mask(template.rhyme_bits[p]).any())
                for p in range(PATTERN_COUNT) if template.patterns >> p & 1)):
            name = f"form.{rule}" if rule else "form.kind"
            raise FormError(name, f"`{name}`: no verse {verse} of the model's vocabulary keeps it together with "
                                  "the verses kept")
    assert template is not None
    prompt = (title + NEWLINE if title else "") + head
    return RevisionPlan(spec, prompt, title + NEWLINE if title else "", head, tail, verses[target],
                        lambda: VerseConstraint(template.clone()))


def rank_candidates(loaded: LoadedModel, plan: RevisionPlan, drawn: list[str], n: int) -> list[Candidate]:
    """The ``n`` most likely distinct new verses among ``drawn``, each as the whole poem, best first.

    A drawn verse equal to the one replaced is left out; every poem is checked against the form
    (a candidate that breaks it would be a bug, and is dropped rather than returned)."""
    kept: list[tuple[str, str]] = []
    for verse in dict.fromkeys(drawn):
        if verse == plan.original or len(verse) != plan.form.chars_per_line:
            continue
        poem = plan.head + verse + plan.tail
        if check_poem(poem, plan.form) is None:
            kept.append((verse, poem))
    scores = continuations_logprobs(loaded, plan.title_line, [poem for _, poem in kept])
    out = [Candidate(verse, poem, sum(score)) for (verse, poem), score in zip(kept, scores)]
    out.sort(key=lambda c: -c.logprob)
    return out[:n]
