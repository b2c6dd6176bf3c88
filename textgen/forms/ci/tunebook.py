"""The tune book (词谱) the ``ci`` form writes by: each tune's shapes, rhymes and fixed tones.

The book is data shipped with the package (``textgen/forms/ci/data/tunebook.json``), derived from
a ci corpus by :mod:`textgen.forms.ci.tunebook_build`.  A tune has one or more shapes
(:class:`Variant`, the 又一体 of a 词谱; the first is the most common, 正体); a shape is its
sentences in order, each with

* its length in Chinese characters and the mark after it: ``。`` ends a line of the corpus layout,
  an internal mark (the most common one is recorded, any of :data:`INTERNAL_MARKS` may stand) does not;
* its tones, one per character: ``平``, ``仄`` (fixed by the tune) or ``中`` (free);
* its rhyme group: the index of the group of sentences whose last characters rhyme in one 部 of
  词林正韵 (:mod:`textgen.forms.ci.cilin`), or -1 where the sentence does not rhyme.  A tune that
  changes rhyme (换韵, 菩萨蛮) has several groups.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BOOK_FILE = Path(__file__).with_name("data") / "tunebook.json"
LINE_END = "。"
INTERNAL_MARKS = "，、？！；："
"""The marks that may end a sentence inside a line (the corpus' own)."""
LEVEL, OBLIQUE, FREE = "平", "仄", "中"
MAIN_VARIANT = "正体"
OTHER_VARIANT = "又一体"
NEAREST_TUNES = 5
"""How many near tune names an unknown tune's error suggests."""


@dataclass(frozen=True)
class Sentence:
    """One sentence of a shape."""

    length: int
    mark: str
    """``。`` (the line ends here) or the most common internal mark."""
    tones: str
    """One of 平/仄/中 per character."""
    rhyme: int = -1
    """The rhyme group the sentence's last character belongs to (-1: it does not rhyme)."""

    @property
    def line_end(self) -> bool:
        return self.mark == LINE_END


@dataclass(frozen=True)
class Variant:
    """One shape of a tune, with how many ci of the corpus have it."""

    index: int
    ci: int
    sentences: tuple[Sentence, ...]
    rhyme_agreement: float
    """Share of the corpus' ci of this shape that rhyme in one 部 in every rhyme group."""
    tone_agreement: float
    """Mean share of those ci that keep the tone at a fixed position."""

    @property
    def name(self) -> str:
        """``正体`` for the most common shape, ``又一体1``, ``又一体2``, ... for the others."""
        return MAIN_VARIANT if self.index == 0 else f"{OTHER_VARIANT}{self.index}"

    @property
    def signature(self) -> str:
        """The sentence lengths, ``,`` inside a line, ``/`` between lines: ``7/7/7/7,7/7``."""
        lines, line = [], []
        for s in self.sentences:
            line.append(str(s.length))
            if s.line_end:
                lines.append(",".join(line))
                line = []
        return "/".join(lines)

    @property
    def rhyme_groups(self) -> int:
        return max((s.rhyme for s in self.sentences), default=-1) + 1

    @property
    def chars(self) -> int:
        """Chinese characters of a ci of this shape."""
        return sum(s.length for s in self.sentences)

    def layout(self) -> str:
        """The shape in the corpus layout, its tones written out: ``中平中仄仄平平。`` a line;
        a rhyming sentence's mark is preceded by its group (``韵1``...)."""
        lines, line = [], ""
        for s in self.sentences:
            line += s.tones + (f"(韵{s.rhyme + 1})" if s.rhyme >= 0 else "") + s.mark
            if s.line_end:
                lines.append(line)
                line = ""
        return "\n".join(lines)

    def to_api(self) -> dict:
        """The shape as ``GET /v1/models/<name>/tunes`` lists it."""
        return {
            "index": self.index, "name": self.name, "signature": self.signature, "ci": self.ci,
            "chars": self.chars, "rhyme_groups": self.rhyme_groups, "layout": self.layout(),
            "sentences": [{"length": s.length, "mark": s.mark, "tones": s.tones, "rhyme": s.rhyme}
                          for s in self.sentences],
        }


@dataclass(frozen=True)
class Tune:
    name: str
    ci: int
    """Ci of the tune in the corpus the book was built from (every shape)."""
    variants: tuple[Variant, ...]

    def variant(self, key: int | str) -> Variant:
        """The shape by index, name (``正体``, ``又一体1``) or signature; KeyError if none."""
        for v in self.variants:
            if key in (v.index, v.name, v.signature) and not isinstance(key, bool):
                return v
        raise KeyError(key)


@dataclass(frozen=True)
class TuneBook:
    tunes: dict[str, Tune]
    about: dict

    def nearest(self, name: str, n: int = NEAREST_TUNES) -> list[str]:
        """The known tunes whose names are closest to ``name`` (after OpenCC traditional→simplified)."""
        candidates = difflib.get_close_matches(simplified(name), list(self.tunes), n=n, cutoff=0.0)
        return candidates

    def find(self, name: str) -> Tune | None:
        """The tune called ``name`` (also written in traditional characters), None when unknown."""
        return self.tunes.get(name) or self.tunes.get(simplified(name))


def simplified(text: str) -> str:
    """``text`` converted by OpenCC from traditional to simplified characters (滿江紅 -> 满江红)."""
    return _to_simplified().convert(text)


@lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")


def parse_book(data: dict) -> TuneBook:
    """A :class:`TuneBook` from the JSON the builder writes."""
    tunes = {}
    for entry in data["tunes"]:
        variants = tuple(
            Variant(i, v["ci"], tuple(Sentence(s["length"], s["mark"], s["tones"], s["rhyme"]) for s in v["sentences"]),
                    v["rhyme_agreement"], v["tone_agreement"])
            for i, v in enumerate(entry["variants"]))
        tunes[entry["name"]] = Tune(entry["name"], entry["ci"], variants)
    return TuneBook(tunes, {k: v for k, v in data.items() if k != "tunes"})


@lru_cache(maxsize=4)
def tune_book(path: Path = BOOK_FILE) -> TuneBook:
    """The shipped tune book (loaded once)."""
    return parse_book(json.loads(path.read_text(encoding="utf-8")))
