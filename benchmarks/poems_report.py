"""What a reader of Tang verse checks, measured on a Tang export (the figures of docs/FORMS.md).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/poems_report.py --tang checkpoints/tang-gru \\
        [--samples 64] [--threads 1] [--data-dir ../shared/data] > docs/results/poems-report-tang-gru.md

For the validation poems, for unconstrained samples (temperature 0.8 under a validation title) and
for samples under the form of that title's real poem, with more and more rules on: the share of
regular 绝句/律诗, of even verses that rhyme (中华新韵), of poems that keep the 平仄 pattern, of
poems without a repeated character, of verses copied verbatim from the training corpus, and the
rare-character rate (characters below 1 in 100,000 of the training corpus).  Then the same for
``min_p`` (sampling that keeps to likely characters), the cost of each rule in chars/s, and ten
example poems with keywords, tones and acrostics.  Re-run it unchanged on a new Tang export.
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from forms_report import BATCH, first_poem, pct, regular_form, val_poems  # noqa: E402

from textgen.evaluation import continuations_logprobs  # noqa: E402
from textgen.export import LoadedModel, load_export  # noqa: E402
from textgen.forms import prepare_form  # noqa: E402
from textgen.forms.books import BOOKS, rhymes  # noqa: E402
from textgen.forms.han import is_han  # noqa: E402
from textgen.forms.revise import prepare_revision, rank_candidates  # noqa: E402
from textgen.forms.tang import TangForm, check_poem, even_verse_ends  # noqa: E402
from textgen.sampling import SamplingParams, generate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import poem_rules  # noqa: E402, I001  the independent checker: the reader's rules by both books

RARE_BELOW = 1e-5  # a character rarer than this in the training corpus counts as rare
UNCOMMON_BELOW = 1e-4  # ... and rarer than this as uncommon (慙 飜 are 1.5e-4 and 3.5e-5 of the Tang corpus)
MIN_P = (0.0, 0.05, 0.1, 0.2)
RULES = [  # the constrained conditions, each adding rules to the form of the title's real poem
    ("form", {}),
    ("form + rhyme", {"rhyme": True}),
    ("form + tones", {"tones": True}),
    ("form + tones + rhyme", {"tones": True, "rhyme": True}),
    ("form + tones + rhyme + no_repeat", {"tones": True, "rhyme": True, "no_repeat": True}),
]


@dataclass
class Corpus:
    """What the checks need from the training corpus."""

    freq: Counter
    chars: int
    verses: set[str]

    def rare(self, char: str, below: float = RARE_BELOW) -> bool:
        return self.freq[char] < below * self.chars


def load_corpus(data_dir: Path) -> Corpus:
    text = (data_dir / "tang" / "train.txt").read_text(encoding="utf-8")
    verses = {v for v in re.split(r"[，。\n]", text) if len(v) in (5, 7)}
    return Corpus(Counter(text), len(text), verses)


@dataclass
class Tally:
    """Counts over the poems of one condition."""

    poems: int = 0
    regular: int = 0
    rhymed: int = 0
    toned: int = 0
    no_repeat: int = 0
    verses: int = 0
    copied: int = 0
    chars: int = 0
    rare: int = 0
    uncommon: int = 0
    repeats: int = 0

    def add(self, lines: list[str], corpus: Corpus) -> None:
        self.poems += 1
        han = [c for c in "".join(lines) if is_han(c)]
        self.chars += len(han)
        self.rare += sum(corpus.rare(c) for c in han)
        self.uncommon += sum(corpus.rare(c, UNCOMMON_BELOW) for c in han)
        self.repeats += len(han) - len(set(han))
        self.no_repeat += len(han) == len(set(han))
        shape = regular_form(lines)
        if not shape:
            return
        kind, chars = shape
        self.regular += 1
        text = "\n".join(lines)
        self.rhymed += rhymes(even_verse_ends(text, chars))
        self.toned += check_poem(text, TangForm(kind, chars, tones=True)) is None
        verses = [v for line in lines for v in re.split(r"[，。]", line) if v]
        self.verses += len(verses)
        self.copied += sum(v in corpus.verses for v in verses)

    def row(self, label: str) -> str:
        return (f"| {label} | {pct(self.regular, self.poems)} | {pct(self.rhymed, self.regular)} | "
                f"{pct(self.toned, self.regular)} | {pct(self.no_repeat, self.poems)} | "
                f"{pct(self.repeats, self.chars)} | {pct(self.copied, self.verses)} | {pct(self.rare, self.chars)} | "
                f"{pct(self.uncommon, self.chars)} |")


HEADER = ["| condition | regular 绝句/律诗 | of those, even verses rhyme | of those, keep 平仄 | "
          "no character twice | characters repeating an earlier one | verses copied from the training corpus | "
          f"rare characters (< {RARE_BELOW:g}) | uncommon (< {UNCOMMON_BELOW:g}) |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]


def sample_free(loaded: LoadedModel, titles: list, samples: int, corpus: Corpus, **params) -> Tally:
    tally = Tally()
    for start in range(0, samples, BATCH):
        title = titles[start // BATCH % len(titles)][0]
        p = SamplingParams(n=BATCH, seed=start, temperature=0.8, max_new_chars=80, **params)
        for s in generate(loaded, title + "\n", p):
            tally.add(first_poem(s.text), corpus)
    return tally


def sample_form(loaded: LoadedModel, titles: list, samples: int, corpus: Corpus, rules: dict, **params) -> Tally:
    tally = Tally()
    for start in range(0, samples, BATCH):
        title, kind, chars = titles[start // BATCH % len(titles)]
        prepared = prepare_form({"kind": kind, "chars_per_line": chars, "title": title, **rules}, loaded)
        p = SamplingParams(n=BATCH, seed=start, temperature=0.8, **params)
        for s in generate(loaded, prepared.prompt, p, constraint=lambda i: prepared.new_constraint()):
            assert check_poem(s.text, prepared.form) is None, s.text
            tally.add(s.text.split("\n"), corpus)
    return tally


def reader_table(loaded: LoadedModel, titles: list, poems: list, samples: int, corpus: Corpus) -> list[str]:
    real = Tally()
    for _, lines in poems:
        real.add(lines, corpus)
    rows = [real.row(f"real poems (Tang val, {real.poems})"),
            sample_free(loaded, titles, samples, corpus).row("unconstrained")]
    for label, rules in RULES:
        rows.append(sample_form(loaded, titles, samples, corpus, rules).row(f"`{label}`"))
    return ["Temperature 0.8, under the titles of validation poems (the form: that poem's kind and verse "
            f"length); unconstrained samples: 80 characters after `title\\n`, first poem of the text; "
            f"{samples} samples a condition.  Rare and uncommon: characters below that share of the training "
            "corpus' characters.", "",
            *HEADER, *rows, ""]


def min_p_table(loaded: LoadedModel, titles: list, samples: int, corpus: Corpus) -> list[str]:
    rows = []
    for min_p in MIN_P:
        rows.append(sample_free(loaded, titles, samples, corpus, min_p=min_p).row(f"unconstrained, min_p {min_p}"))
    for min_p in MIN_P:
        rows.append(sample_form(loaded, titles, samples, corpus, {"tones": True, "rhyme": True},
                                min_p=min_p).row(f"`form + tones + rhyme`, min_p {min_p}"))
    return ["Keeping to likely characters: `min_p` drops every character less likely than `min_p` times the most "
            "likely one (temperature 0.8, the same titles and seeds):", "", *HEADER, *rows, ""]


def cost_table(loaded: LoadedModel, title: str, repeats: int = 3) -> list[str]:
    """chars/s of one batch of BATCH 7-character 律诗 under each rule (best of ``repeats``, interleaved)."""
    base = {"kind": "lushi", "chars_per_line": 7, "title": title}
    forms = [("form", {}), ("+ rhyme", {"rhyme": True}), ("+ tones", {"tones": True}),
             ("+ no_repeat", {"no_repeat": True}), ("+ keywords 月, 江", {"keywords": ["月", "江"]}),
             ("+ acrostic", {"acrostic": "一二三四五六七八"}),
             ("all: tones, rhyme, no_repeat, keywords 月 江, acrostic",
              {"tones": True, "rhyme": True, "no_repeat": True, "keywords": ["月", "江"], "acrostic": "一二三四五六七八"})]
    prepared = [prepare_form({**base, **rules}, loaded) for _, rules in forms]

    def rate(prep) -> float:
        params = SamplingParams(n=BATCH, seed=0, temperature=0.8, max_new_chars=67)
        began = time.perf_counter()
        samples = generate(loaded, prep.prompt if prep else "", params,
                           constraint=(lambda i: prep.new_constraint()) if prep else None)
        return sum(s.generated_chars for s in samples) / (time.perf_counter() - began)

    free, under = [], [[] for _ in forms]
    for _ in range(repeats):
        free.append(rate(None))
        for rates, prep in zip(under, prepared):
            rates.append(rate(prep))
    rows = [f"| none (67 characters after no prompt) | {max(free):,.0f} | - |"]
    for (label, _), rates in zip(forms, under):
        rows.append(f"| {label} | {max(rates):,.0f} | {100 * (1 - max(rates) / max(free)):+.0f}% |")
    return [f"Cost of each rule ({BATCH} rows a batch, 7-character 律诗 under `{title}`, temperature 0.8, best of "
            f"{repeats} interleaved runs; each `+` row is the plain form plus that rule):", "",
            "| rules | chars/s | slower than none |", "| --- | ---: | ---: |", *rows, ""]


SHOWCASE = [
    ({"kind": "lushi", "chars_per_line": 7, "title": "秋夜", "tones": True, "rhyme": True, "no_repeat": True,
      "keywords": ["月", "江"]}, 0.8),
    ({"kind": "jueju", "chars_per_line": 5, "title": "春晓", "tones": True, "rhyme": True}, 0.8),
    ({"kind": "jueju", "chars_per_line": 7, "title": "登楼", "tones": "平起", "rhyme": True, "no_repeat": True}, 0.8),
    ({"kind": "lushi", "chars_per_line": 5, "title": "送友人", "tones": "仄起", "rhyme": True, "no_repeat": True}, 0.7),
    ({"kind": "jueju", "chars_per_line": 5, "title": "山居", "keywords": ["白云", "松"], "rhyme": True}, 0.8),
    ({"kind": "jueju", "chars_per_line": 7, "title": "江南", "keywords": ["江南", "柳"], "tones": True, "rhyme": True},
     0.8),
    ({"kind": "lushi", "chars_per_line": 7, "title": "边塞", "keywords": ["长城", "月", "马"], "rhyme": True,
      "no_repeat": True}, 0.8),
    ({"kind": "jueju", "chars_per_line": 5, "title": "四时", "acrostic": "春夏秋冬", "tones": True, "rhyme": True,
      "no_repeat": True}, 0.8),
    ({"kind": "jueju", "chars_per_line": 7, "title": "风花雪月", "acrostic": "风花雪月", "keywords": ["明"],
      "tones": True, "rhyme": True}, 0.8),
    ({"kind": "lushi", "chars_per_line": 5, "acrostic": "一二三四五六七八", "title": "数", "tones": True, "rhyme": True,
      "no_repeat": True}, 0.0),
]


def showcase(loaded: LoadedModel) -> list[str]:
    md = ["Ten example poems (first sample of seed 1):", ""]
    for form, temperature in SHOWCASE:
        prepared = prepare_form(form, loaded)
        s = generate(loaded, prepared.prompt, SamplingParams(n=1, seed=1, temperature=temperature),
                     constraint=lambda i: prepared.new_constraint())[0]
        extras = ", ".join(f"{k}={v}" for k, v in form.items() if k not in ("kind", "chars_per_line", "title"))
        md += [f"`{form['kind']}` {form['chars_per_line']}, temperature {temperature}, {extras}", "", "```",
               prepared.prompt + s.text, "```", ""]
    return md


# --------------------------------------------------------------------------- by the book (issue 30)
BOOK_RULES = [  # (label, rules) sampled under each book; the kind and verse length are the title's real poem's
    ("form, no rules", {"rhyme": False, "tones": False}),
    ("rhyme", {"rhyme": True, "tones": False}),
    ("tones", {"rhyme": False, "tones": True}),
    ("rhyme + tones", {"rhyme": True, "tones": True}),
    ("rhyme + tones + 首句入韵", {"rhyme": True, "tones": True, "first_verse_rhymes": True}),
    ("defaults (jueju: rhyme; lushi: rhyme + tones)", {}),
]


@dataclass
class BookTally:
    """What a reader checks by one book, over the regular poems of one condition (tests/poem_rules.py)."""

    book: str
    poems: int = 0
    rhymed: int = 0
    patterned: int = 0
    level_verses: int = 0
    gu_ping: int = 0
    san_ping_wei: int = 0
    unknown: int = 0
    chars: int = 0

    def add(self, lines: list[str]) -> None:
        shape = regular_form(lines)
        if not shape:
            return
        kind, chars = shape
        verses = [v for line in lines for v in re.split(r"[，。]", line) if v]
        self.poems += 1
        self.rhymed += bool(poem_rules.shared_groups("".join(v[-1] for v in verses[1::2]), self.book))
        self.patterned += any(not poem_rules.tonal_problems(verses, None, first, self.book, fine=False)
                              for first in (False, True))
        for verse in verses[1::2]:
            self.level_verses += 1
            found = " ".join(poem_rules.fine_problems(verse, self.book))
            self.gu_ping += "孤平" in found
            self.san_ping_wei += "三平尾" in found
        han = "".join(verses)
        self.chars += len(han)
        self.unknown += sum(not poem_rules.tones(c, self.book) for c in han)

    def cells(self) -> str:
        return (f"{pct(self.rhymed, self.poems)} | {pct(self.patterned, self.poems)} | "
                f"{pct(self.gu_ping, self.level_verses)} | {pct(self.san_ping_wei, self.level_verses)} | "
                f"{pct(self.unknown, self.chars)}")


@dataclass
class Cost:
    chars: int = 0
    nats: float = 0.0
    seconds: float = 0.0

    def cells(self) -> str:
        bpc = self.nats / max(self.chars, 1) / math.log(2)
        return f"{bpc:.3f} | {self.chars / max(self.seconds, 1e-9):,.0f}"


def _tallies() -> dict[str, BookTally]:
    return {book: BookTally(book) for book in BOOKS}


def book_table(loaded: LoadedModel, titles: list, poems: list, samples: int, temperature: float) -> list[str]:
    """Rhyme, pattern, 孤平 and 三平尾 by both books, for real poems, the model without rules and each rule
    under each book, with each condition's cost (the model's bpc of what it wrote, chars/s)."""
    rows = []
    real = _tallies()
    for _, lines in poems:
        for tally in real.values():
            tally.add(lines)
    rows.append(f"| real poems (Tang val, {real[BOOKS[0]].poems} regular) | - | "
                + " | ".join(real[b].cells() for b in BOOKS) + " | - | - |")
    free, cost = _tallies(), Cost()
    for start in range(0, samples, BATCH):
        title = titles[start // BATCH * 7 % len(titles)][0]
        p = SamplingParams(n=BATCH, seed=start, temperature=temperature, max_new_chars=80, return_logprobs=True)
        began = time.perf_counter()
        drawn = generate(loaded, title + "\n", p)
        cost.seconds += time.perf_counter() - began
        for s in drawn:
            cost.chars += s.generated_chars
            cost.nats -= s.logprob
            for tally in free.values():
                tally.add(first_poem(s.text))
    rows.append("| model, no form (first poem of 80 characters after `title\\n`) | - | "
                + " | ".join(free[b].cells() for b in BOOKS) + f" | {cost.cells()} |")
    for book in BOOKS:
        for label, rules in BOOK_RULES:
            tallies, cost = _tallies(), Cost()
            for start in range(0, samples, BATCH):
                title, kind, chars = titles[start // BATCH * 7 % len(titles)]  # titles spread over the set
                prepared = prepare_form({"kind": kind, "chars_per_line": chars, "title": title, "book": book, **rules},
                                        loaded)
                p = SamplingParams(n=BATCH, seed=start, temperature=temperature, return_logprobs=True)
                began = time.perf_counter()
                drawn = generate(loaded, prepared.prompt, p, constraint=lambda i: prepared.new_constraint())
                cost.seconds += time.perf_counter() - began
                for s in drawn:
                    assert check_poem(s.text, prepared.form) is None, s.text
                    cost.chars += s.generated_chars
                    cost.nats -= s.logprob
                    for tally in tallies.values():
                        tally.add(s.text.split("\n"))
            rows.append(f"| `{label}` | {book} | " + " | ".join(tallies[b].cells() for b in BOOKS)
                        + f" | {cost.cells()} |")
            print(rows[-1], file=sys.stderr, flush=True)  # progress
    head = " | ".join(f"{b}: rhyme | {b}: pattern | {b}: 孤平 | {b}: 三平尾 | {b}: unknown chars" for b in BOOKS)
    return [f"Temperature {temperature}, under the titles of validation poems (the form: that poem's kind and verse "
            f"length), {samples} samples a condition, {BATCH} rows a batch.  Rhyme: the even verses share a group "
            "(平水韵: a level group); pattern: 二四(六)分明, 粘, 对 and the verse ends, with the first verse "
            "rhyming or not; 孤平 and 三平尾: share of the even verses (the definitions of tests/poem_rules.py, "
            "by 平水韵 readings for both columns' 孤平/三平尾 under 平水韵, by Mandarin tones under 中华新韵); unknown: "
            "characters the book has no reading of.  bpc: the model's own bits per generated character (what "
            "the rules let through); chars/s: generated characters over the sampling time of the condition.",
            "", f"| condition | sampled under | {head} | bpc | chars/s |",
            "| --- | --- |" + " ---: |" * (5 * len(BOOKS) + 2), *rows, ""]


def rules_cost(loaded: LoadedModel, titles: list, batches: int = 4, repeats: int = 2) -> list[str]:
    """What rhyme and tones cost a 律诗 by 平水韵: the model's bpc of what it wrote and chars/s, the
    conditions interleaved (each repeat samples every condition in turn; best chars/s of the repeats)."""
    conditions = [("no rules", {"rhyme": False, "tones": False}), ("rhyme", {"rhyme": True, "tones": False}),
                  ("rhyme + tones", {"rhyme": True, "tones": True})]
    rows = []
    for chars in (5, 7):
        lushi = [t for t, kind, c in titles if kind == "lushi" and c == chars][:batches]
        results = {label: [Cost() for _ in range(repeats)] for label, _ in conditions}
        for r in range(repeats):
            for label, rules in conditions:
                cost = results[label][r]
                for b, title in enumerate(lushi):
                    prepared = prepare_form({"kind": "lushi", "chars_per_line": chars, "title": title, **rules}, loaded)
                    p = SamplingParams(n=BATCH, seed=b, temperature=0.8, return_logprobs=True)
                    began = time.perf_counter()
                    drawn = generate(loaded, prepared.prompt, p, constraint=lambda i: prepared.new_constraint())
                    cost.seconds += time.perf_counter() - began
                    cost.chars += sum(s.generated_chars for s in drawn)
                    cost.nats -= sum(s.logprob for s in drawn)
        base = None
        for label, _ in conditions:
            bpc = results[label][0].nats / results[label][0].chars / math.log(2)
            rate = max(c.chars / c.seconds for c in results[label])
            base = base or (bpc, rate)
            rows.append(f"| lushi {chars} | {label} | {bpc:.3f} | {bpc - base[0]:+.3f} | {rate:,.0f} | "
                        f"{100 * (rate / base[1] - 1):+.0f}% |")
            print(rows[-1], file=sys.stderr, flush=True)
    return [f"The cost of rhyme and tones by 平水韵 ({len(lushi)} validation titles a verse length, {BATCH} rows "
            f"each, temperature 0.8, the conditions interleaved, best chars/s of {repeats} repeats; bpc: the "
            "model's own bits per character of what it wrote, summed over the first repeat):", "",
            "| form | rules | bpc | vs no rules | chars/s | vs no rules |", "| --- | --- | ---: | ---: | ---: | ---: |",
            *rows, ""]


def revise_showcase(loaded: LoadedModel) -> list[str]:
    """Ten poems by 平水韵 (the defaults and each new rule), and one verse revised: before and after."""
    forms = [
        {"kind": "jueju", "chars_per_line": 7, "title": "春日"},
        {"kind": "jueju", "chars_per_line": 7, "title": "春日", "tones": True},
        {"kind": "lushi", "chars_per_line": 5, "title": "秋夜"},
        {"kind": "lushi", "chars_per_line": 7, "title": "登高", "first_verse_rhymes": True},
        {"kind": "jueju", "chars_per_line": 5, "title": "江雪", "tones": "仄起", "first_verse_rhymes": False},
        {"kind": "jueju", "chars_per_line": 7, "title": "送别", "tones": True, "no_repeat": True, "keywords": ["柳"]},
        {"kind": "jueju", "chars_per_line": 7, "title": "四时", "acrostic": "春夏秋冬", "tones": True},
        {"kind": "lushi", "chars_per_line": 5, "title": "山居", "no_repeat": True, "keywords": ["白云", "松"]},
        {"kind": "jueju", "chars_per_line": 7, "title": "春日", "book": "中华新韵", "tones": True},
    ]
    md = ["Examples by 平水韵 unless said (seed 1, temperature 0.8, float32 weights: `python -m textgen.sample "
          "checkpoint=tang-gru form=... seed=1 quantize=none encoder_runtime=torch` writes the same):", ""]
    for form in forms:
        prepared = prepare_form(form, loaded)
        s = generate(loaded, prepared.prompt, SamplingParams(seed=1), constraint=lambda i: prepared.new_constraint())[0]
        extras = ", ".join(f"{k}={v}" for k, v in form.items() if k not in ("kind", "chars_per_line", "title"))
        md += [f"`{form['kind']}` {form['chars_per_line']}{', ' + extras if extras else ' (defaults)'}", "", "```",
               prepared.prompt + s.text, "```", ""]
    form = {"kind": "lushi", "chars_per_line": 7, "title": "秋夜", "no_repeat": True, "keywords": ["月", "江"]}
    prepared = prepare_form(form, loaded)
    poem = generate(loaded, prepared.prompt, SamplingParams(seed=2), constraint=lambda i: prepared.new_constraint())[0]
    plan = prepare_revision(form, loaded, poem.text, 3)
    drawn = generate(loaded, plan.prompt, SamplingParams(n=12, seed=1, max_new_chars=7),
                     constraint=lambda i: plan.new_constraint())
    best = rank_candidates(loaded, plan, [s.text for s in drawn], 3)
    before = sum(continuations_logprobs(loaded, plan.title_line, [poem.text])[0])
    md += [f"A revised verse: `{form}` (defaults: rhyme and tones), seed 2; verse 3 revised with "
           "`POST /v1/poems/revise` `{\"verse\": 3, \"n\": 3, \"seed\": 1}` (the same draws):", "",
           "```", "before:", prepared.prompt + poem.text, "", f"after (best of {len(best)} candidates: "
           + ", ".join(f"{c.verse} {c.logprob:.1f}" for c in best) + f"; the poem before: {before:.1f} nats):",
           plan.title_line + (best[0].poem if best else "(none)"), "```", ""]
    return md


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tang", nargs="+", required=True, help="Tang export folders")
    parser.add_argument("--samples", type=int, default=64, help="samples per condition (multiple of 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--data-dir", default="/work/shared/data", help="the shared corpora")
    parser.add_argument("--sections", default="reader,min_p,cost,examples",
                        help="which tables to print: reader, min_p, cost, examples, books, rules_cost, revise")
    parser.add_argument("--temperature", type=float, default=0.8, help="of the books table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    data_dir = Path(args.data_dir)
    corpus = load_corpus(data_dir)
    poems = [(t, lines) for t, lines in val_poems(data_dir) if regular_form(lines)]
    titles = [(t, *regular_form(lines)) for t, lines in poems if len(t) <= 12]
    md = ["## Poems report", "",
          f"`python benchmarks/poems_report.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
          f"{platform.machine()} with {args.threads} torch thread(s), torch {torch.__version__}.", ""]
    for path in args.tang:
        loaded = load_export(path)
        md += [f"### `{loaded.name}`", ""]
        tables = {"reader": lambda: reader_table(loaded, titles, poems, args.samples, corpus),
                  "min_p": lambda: min_p_table(loaded, titles, args.samples, corpus),
                  "cost": lambda: cost_table(loaded, titles[0][0]), "examples": lambda: showcase(loaded),
                  "books": lambda: book_table(loaded, titles, poems, args.samples, args.temperature),
                  "rules_cost": lambda: rules_cost(loaded, titles), "revise": lambda: revise_showcase(loaded)}
        for name, table in tables.items():
            if name in sections:
                md += table()
                print("\n".join(md), flush=True)  # a table at a time: a long run shows its progress
                md = []


if __name__ == "__main__":
    main()
