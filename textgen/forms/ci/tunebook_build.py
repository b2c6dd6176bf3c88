"""Build the tune book (``textgen/forms/ci/data/tunebook.json``) from a ci corpus.

Run (the JSON is shipped; this only rebuilds it, from any corpus in the songci layout)::

    python -m textgen.forms.ci.tunebook_build                       # $TEXTGEN_DATA_DIR/songci/train.txt
    python -m textgen.forms.ci.tunebook_build --corpus my_ci.txt --out book.json

The corpus: one ci a block, the tune's name on its first line, then one line per sentence group
ending ``。`` (inside a line the sentences end with one of ``，、？！；：``), a blank line between ci.
A ci whose lines do not parse (a line without ``。`` at its end, an empty sentence, a character
that is neither Chinese nor a mark) is left out.  For every tune with at least ``--min-ci`` ci (not 失调名, the
corpus' name for a lost tune):

* **shapes** (又一体): the ci are grouped by their sentence lengths and line breaks; each shape
  that at least ``--variant-share`` of the tune's ci and at least ``--variant-ci`` ci share is
  kept, the most common first.  A tune none of whose shapes qualifies is left out.
* **rhymes**: for every two sentence ends of a shape, the share of its ci whose last characters
  share a 部 of 词林正韵 (any reading); ends linked by at least ``--rhyme-agreement`` are joined,
  and each connected set of two or more ends is one rhyme group (several where the tune changes
  rhyme, 换韵).  Pairwise agreement finds 菩萨蛮's four alternating groups, which a single
  dominant rhyme would not.
* **tones**: a position where at least ``--tone-agreement`` of the shape's ci (those whose
  character the book knows) can be read 平 (and fewer can be read 仄), or the other way round,
  is fixed; the rest are free (中).

The numbers it prints (tunes and ci covered, each tune's shape share and agreement) are the ones
``docs/FORMS.md`` records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

from textgen.forms.ci.cilin import BOTH, cilin
from textgen.forms.ci.tunebook import BOOK_FILE, FREE, INTERNAL_MARKS, LEVEL, LINE_END, OBLIQUE
from textgen.forms.han import is_han
from textgen.forms.tones import PING, ZE

MIN_CI = 20
VARIANT_SHARE = 0.10
VARIANT_CI = 5
RHYME_AGREEMENT = 0.70
TONE_AGREEMENT = 0.90
NOT_TUNES = ("失调名",)
"""Names the corpus gives ci whose tune is lost (失调名: "tune name lost"), not tunes."""

_SENTENCE = re.compile(f"([^{INTERNAL_MARKS}{LINE_END}]+)([{INTERNAL_MARKS}{LINE_END}])")


def parse_ci(block: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(tune, [(sentence, mark), ...]) of one corpus block; None when it does not parse."""
    lines = block.strip("\n").split("\n")
    if len(lines) < 2:
        return None
    sentences = []
    for line in lines[1:]:
        if not line.endswith(LINE_END):
            return None
        pieces = _SENTENCE.findall(line)
        if "".join(a + b for a, b in pieces) != line or any(m == LINE_END for _, m in pieces[:-1]):
            return None
        for text, mark in pieces:
            if not all(is_han(c) for c in text):
                return None
            sentences.append((text, mark))
    return lines[0].strip(), sentences


def shape_key(sentences: list[tuple[str, str]]) -> tuple[tuple[int, bool], ...]:
    """The shape of a ci: each sentence's length and whether its line ends there."""
    return tuple((len(text), mark == LINE_END) for text, mark in sentences)


def _tones(members: list[list[tuple[str, str]]], threshold: float) -> list[str]:
    book = cilin()
    out = []
    for s, (text, _) in enumerate(members[0]):
        tones = ""
        for i in range(len(text)):
            known = [book.tones_of(ci[s][0][i]) for ci in members]
            known = [t for t in known if t]
            level = sum(1 for t in known if t & PING) / max(1, len(known))
            oblique = sum(1 for t in known if t & ZE) / max(1, len(known))
            tones += LEVEL if level >= threshold > oblique else OBLIQUE if oblique >= threshold > level else FREE
        out.append(tones)
    return out


def _rhyme_groups(members: list[list[tuple[str, str]]], threshold: float) -> list[int]:
    book = cilin()
    ends = [[ci[s][0][-1] for ci in members] for s in range(len(members[0]))]
    bits = [[book.bu_bits(c) for c in column] for column in ends]
    n = len(ends)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            agree = sum(1 for a, b in zip(bits[i], bits[j]) if a & b) / len(members)
            if agree >= threshold:
                parent[root(j)] = root(i)
    sizes = Counter(root(i) for i in range(n))
    groups: dict[int, int] = {}
    out = []
    for i in range(n):
        r = root(i)
        if sizes[r] < 2:
            out.append(-1)
        else:
            out.append(groups.setdefault(r, len(groups)))
    return out


def _mark(members: list[list[tuple[str, str]]], s: int) -> str:
    return Counter(ci[s][1] for ci in members).most_common(1)[0][0]


def _agreement(members, tones: list[str], rhymes: list[int]) -> tuple[float, float]:
    """(share of ci rhyming in one 部 in every group, mean share keeping a fixed tone)."""
    book = cilin()
    groups = max(rhymes, default=-1) + 1
    rhyming = 0
    for ci in members:
        ok = True
        for g in range(groups):
            chars = "".join(ci[s][0][-1] for s in range(len(rhymes)) if rhymes[s] == g)
            wanted = tuple({LEVEL: PING, OBLIQUE: ZE}.get(tones[s][-1], BOTH)
                           for s in range(len(rhymes)) if rhymes[s] == g)
            ok = ok and bool(book.rhymes(chars, wanted))
        rhyming += ok
    kept = []
    for s, pattern in enumerate(tones):
        for i, tone in enumerate(pattern):
            if tone == FREE:
                continue
            wanted = PING if tone == LEVEL else ZE
            known = [book.tones_of(ci[s][0][i]) for ci in members]
            known = [t for t in known if t]
            kept.append(sum(1 for t in known if t & wanted) / max(1, len(known)))
    return rhyming / len(members), (sum(kept) / len(kept) if kept else 1.0)


def build(corpus: Path, min_ci: int = MIN_CI, variant_share: float = VARIANT_SHARE, variant_ci: int = VARIANT_CI,
          rhyme_agreement: float = RHYME_AGREEMENT, tone_agreement: float = TONE_AGREEMENT) -> dict:
    """The tune book of ``corpus`` (the JSON :func:`textgen.forms.ci.tunebook.parse_book` reads)."""
    blocks = [b for b in corpus.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    by_tune: dict[str, list] = {}
    unparsed = 0
    for block in blocks:
        parsed = parse_ci(block)
        if parsed is None:
            unparsed += 1
            continue
        by_tune.setdefault(parsed[0], []).append(parsed[1])
    tunes = []
    for name, cis in sorted(by_tune.items(), key=lambda item: (-len(item[1]), item[0])):
        if len(cis) < min_ci or name in NOT_TUNES:
            continue
        shapes = Counter(shape_key(ci) for ci in cis)
        variants = []
        for key, count in shapes.most_common():
            if count < variant_ci or count < variant_share * len(cis):
                continue
            members = [ci for ci in cis if shape_key(ci) == key]
            tones = _tones(members, tone_agreement)
            rhymes = _rhyme_groups(members, rhyme_agreement)
            rhyme_share, tone_share = _agreement(members, tones, rhymes)
            variants.append({
                "ci": count, "rhyme_agreement": round(rhyme_share, 4), "tone_agreement": round(tone_share, 4),
                "sentences": [{"length": length, "mark": _mark(members, s), "tones": tones[s], "rhyme": rhymes[s]}
                              for s, (length, _) in enumerate(key)],
            })
        if variants:
            tunes.append({"name": name, "ci": len(cis), "variants": variants})
    covered = sum(v["ci"] for t in tunes for v in t["variants"])
    return {
        "about": "词谱 derived from a ci corpus by python -m textgen.forms.ci.tunebook_build "
                 "(shapes, rhyme groups by 词林正韵, fixed tones by 平水韵)",
        "corpus": corpus.name, "corpus_ci": len(blocks), "unparsed_ci": unparsed,
        "tunes_covered": len(tunes), "tune_ci": sum(t["ci"] for t in tunes), "ci_covered": covered,
        "thresholds": {"min_ci": min_ci, "variant_share": variant_share, "variant_ci": variant_ci,
                       "rhyme_agreement": rhyme_agreement, "tone_agreement": tone_agreement},
        "tunes": tunes,
    }


def report(book: dict) -> str:
    """A Markdown table of the book's numbers: per tune its ci, each shape's share and agreement."""
    rows = [f"{book['tunes_covered']} tunes holding {book['tune_ci']} of the {book['corpus_ci']} ci; "
            f"{book['ci_covered']} ci have a kept shape ({book['unparsed_ci']} ci did not parse)", "",
            "| tune | ci | shapes (share of the tune's ci) | rhyme groups | fixed tones | rhyme agreement | "
            "tone agreement |", "|---|---|---|---|---|---|---|"]
    for tune in book["tunes"]:
        main = tune["variants"][0]
        chars = sum(s["length"] for s in main["sentences"])
        fixed = sum(len(s["tones"]) - s["tones"].count(FREE) for s in main["sentences"])
        shares = " + ".join(f"{v['ci'] / tune['ci']:.0%}" for v in tune["variants"])
        groups = max(s["rhyme"] for s in main["sentences"]) + 1
        rows.append(f"| {tune['name']} | {tune['ci']} | {shares} | {groups} | {fixed}/{chars} | "
                    f"{main['rhyme_agreement']:.0%} | {main['tone_agreement']:.0%} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    default = Path(os.environ.get("TEXTGEN_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default / "songci" / "train.txt")
    parser.add_argument("--out", type=Path, default=BOOK_FILE)
    parser.add_argument("--min-ci", type=int, default=MIN_CI)
    parser.add_argument("--variant-share", type=float, default=VARIANT_SHARE)
    parser.add_argument("--variant-ci", type=int, default=VARIANT_CI)
    parser.add_argument("--rhyme-agreement", type=float, default=RHYME_AGREEMENT)
    parser.add_argument("--tone-agreement", type=float, default=TONE_AGREEMENT)
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        print(f"corpus {args.corpus} not found (set TEXTGEN_DATA_DIR or pass --corpus)", file=sys.stderr)
        return 2
    print(f"reading {args.corpus} ...", file=sys.stderr, flush=True)
    book = build(args.corpus, args.min_ci, args.variant_share, args.variant_ci, args.rhyme_agreement,
                 args.tone_agreement)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(book, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(report(book))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
