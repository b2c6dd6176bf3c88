"""Where a tune's shape divides into its stanzas (阕): the 上阕 and 下阕 of a double-stanza tune.

The corpus does not mark stanzas, so the division is read off the shape.  A stanza ends a line of
the corpus layout (``。``), and the two stanzas of a double tune (双调) hold about as many characters.
What marks the place among those line ends:

* most double tunes repeat the end of the first stanza in the second: 浣溪沙 is 7,7,7 / 7,7,7,
  鹧鸪天 7,7,7,7 / 3,3,7,7,7 (the second stanza changes its head, 换头), 西江月 6,6,7,6 / 6,6,7,6;
* a tune that changes rhyme (换韵) often changes it between the stanzas: 清平乐 4,5,7,6 (仄韵) /
  6,6,6,6 (平韵), 菩萨蛮 7,7,5,5 / 5,5,5,5.

Each line end ``k`` whose halves differ by at most :data:`MAX_IMBALANCE` of the characters scores

    characters of the longest common tail of the sentence lengths before and after k
    + :data:`RHYME_CHANGE_BONUS` if a new rhyme group begins at k
    - |characters before k - characters after k|

among those with evidence (a common tail of at least :data:`MIN_COMMON_SENTENCES` sentences, or a
rhyme change), the highest winning (the one nearer the middle on a tie).  Without evidence a long
shape (:data:`MIN_DOUBLE_CHARS` characters or more: 诉衷情, 齐天乐, whose halves do not end alike)
divides at the line end nearest the middle, and a short one is a single stanza (单调: 如梦令, 忆王孙).
Tunes of three stanzas (三叠: 兰陵王) are shown in two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textgen.forms.ci.tunebook import Sentence, Variant

MIN_COMMON_SENTENCES = 2
"""The fewest sentences a common tail of the two halves must hold to mark a division."""
RHYME_CHANGE_BONUS = 4
"""Characters a rhyme change at a line end weighs, against the halves' difference in length."""
MAX_IMBALANCE = 0.2
"""The largest difference in characters between the two stanzas, as a share of the shape's characters."""
MIN_DOUBLE_CHARS = 40
"""The fewest characters of a shape that divides without evidence (the book's single tunes hold 31-33)."""
STANZA_NAMES = ("上阕", "下阕")


@dataclass(frozen=True)
class Stanza:
    """One stanza of a shape: the sentences ``start`` .. ``start + sentences - 1``."""

    start: int
    sentences: int
    lines: int
    """Lines of the corpus layout (sentence groups ending ``。``)."""
    chars: int
    """Chinese characters."""

    def to_api(self, name: str) -> dict:
        return {"name": name, "start": self.start, "sentences": self.sentences, "lines": self.lines,
                "chars": self.chars}


def _common_tail(first: Sequence[int], second: Sequence[int]) -> list[int]:
    """The longest common ending of two sequences of sentence lengths."""
    tail = []
    for a, b in zip(reversed(first), reversed(second)):
        if a != b:
            break
        tail.append(a)
    return tail


def _rhyme_changes(sentences: Sequence[Sentence], k: int) -> bool:
    """Whether the first rhyming sentence from ``k`` on opens a rhyme group not used before ``k``."""
    before = {s.rhyme for s in sentences[:k] if s.rhyme >= 0}
    after = next((s.rhyme for s in sentences[k:] if s.rhyme >= 0), -1)
    return bool(before) and after >= 0 and after not in before


def stanza_break(sentences: Sequence[Sentence]) -> int | None:
    """The index of the first sentence of the second stanza, None for a single-stanza shape."""
    lengths = [s.length for s in sentences]
    total = sum(lengths)
    best: tuple[float, float, int] | None = None  # (score, -distance from the middle, k)
    nearest: tuple[float, int] | None = None  # (distance from the middle, k)
    for k in range(1, len(sentences)):
        if not sentences[k - 1].line_end:
            continue
        imbalance = abs(sum(lengths[:k]) - sum(lengths[k:]))
        if imbalance > MAX_IMBALANCE * total:
            continue
        if nearest is None or imbalance < nearest[0]:
            nearest = (imbalance, k)
        tail = _common_tail(lengths[:k], lengths[k:])
        rhyme_change = _rhyme_changes(sentences, k)
        if len(tail) < MIN_COMMON_SENTENCES and not rhyme_change:
            continue
        score = sum(tail) + RHYME_CHANGE_BONUS * rhyme_change - imbalance
        candidate = (score, -imbalance, k)
        if best is None or candidate > best:
            best = candidate
    if best is not None:
        return best[2]
    if nearest is not None and total >= MIN_DOUBLE_CHARS:
        return nearest[1]
    return None


def _stanza(sentences: Sequence[Sentence], start: int, end: int) -> Stanza:
    part = sentences[start:end]
    return Stanza(start, len(part), sum(s.line_end for s in part), sum(s.length for s in part))


def stanzas(shape: Variant) -> list[Stanza]:
    """The stanzas of ``shape``: two for a double-stanza tune, one otherwise."""
    k = stanza_break(shape.sentences)
    n = len(shape.sentences)
    if k is None:
        return [_stanza(shape.sentences, 0, n)]
    return [_stanza(shape.sentences, 0, k), _stanza(shape.sentences, k, n)]


def stanzas_api(shape: Variant) -> list[dict]:
    """The stanzas of ``shape`` as ``GET /v1/models/<name>/tunes`` lists them (named 上阕/下阕, or 全阕 alone)."""
    found = stanzas(shape)
    if len(found) == 1:
        return [found[0].to_api("全阕")]
    return [stanza.to_api(name) for stanza, name in zip(found, STANZA_NAMES)]
