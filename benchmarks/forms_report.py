"""Measure forms on real exports and print Markdown (the figures of docs/FORMS.md).

    python benchmarks/forms_report.py --tang .bench/forms-checkpoints/forms-tang \\
        --stacks .bench/forms-checkpoints/forms-stacks [--samples 64] [--threads 1] > report.md

For a Tang export: the share of unconstrained samples (temperature 0.8, under a title from the
validation poems) that happen to be a valid 绝句/律诗, the share under each form (always 100%),
how often the even verses rhyme (in the corpus, unconstrained, constrained without and with
``rhyme``), the throughput with and without constraints, and ten example poems.  For a Stacks
export: the share of unconstrained samples balanced when the text ends, with and without the
``latex`` form, how often the model closes the environment itself, throughput, two excerpts.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textgen.export import LoadedModel, load_export  # noqa: E402
from textgen.forms import check_text, even_verse_ends, is_balanced, prepare_form, rhymes  # noqa: E402
from textgen.forms.latex import LatexState  # noqa: E402
from textgen.sampling import SamplingParams, generate  # noqa: E402

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
BATCH = 16


def batches(loaded: LoadedModel, prompts: list[str], params: dict, form: dict | None = None):
    """Samples in batches of BATCH rows, each batch under its first prompt (and ``form``).

    Returns ([(prompt fed, sample, its constraint or None)], characters generated, seconds).
    """
    out, chars, seconds = [], 0, 0.0
    for start in range(0, len(prompts), BATCH):
        group = prompts[start:start + BATCH]
        prompt = group[0]
        prepared = prepare_form(form, loaded, prompt) if form else None
        fed = prepared.prompt if prepared else prompt
        p = SamplingParams(n=len(group), seed=start, **params)
        constraints = {}

        def constraint(index: int):
            constraints[index] = prepared.new_constraint()
            return constraints[index]

        began = time.perf_counter()
        samples = generate(loaded, fed, p, constraint=constraint if prepared else None)
        seconds += time.perf_counter() - began
        chars += sum(s.generated_chars for s in samples)
        out += [(fed, s, constraints.get(i)) for i, s in enumerate(samples)]
    return out, chars, seconds


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a"


# --------------------------------------------------------------------------- Tang
def val_poems(data_dir: Path) -> list[tuple[str, list[str]]]:
    """(title, couplet lines) of the validation poems."""
    poems = []
    for block in (data_dir / "tang" / "val.txt").read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if len(lines) >= 2:
            poems.append((lines[0], lines[1:]))
    return poems


def regular_form(lines: list[str]) -> tuple[str, int] | None:
    """("jueju" | "lushi", chars) when ``lines`` are 2 or 4 couplets of 5 or 7 characters."""
    for chars in (5, 7):
        couplet = re.compile(f"^[{HAN}]{{{chars}}}，[{HAN}]{{{chars}}}。$")
        if lines and all(couplet.match(line) for line in lines):
            return {2: ("jueju", chars), 4: ("lushi", chars)}.get(len(lines))
    return None


def first_poem(text: str) -> list[str]:
    return [line for line in text.split("\n\n")[0].split("\n") if line]


def tang_report(loaded: LoadedModel, samples: int, data_dir: Path) -> list[str]:
    poems = val_poems(data_dir)
    titles = [title for title, lines in poems if regular_form(lines) and len(title) <= 12]
    md = [f"### Tang: `{loaded.name}`", ""]

    regular = [(t, lines) for t, lines in poems if regular_form(lines)]
    corpus_rhymes = sum(rhymes(even_verse_ends("\n".join(lines), regular_form(lines)[1])) for _, lines in regular)

    # unconstrained: the model writes after "title\n"
    prompts = [titles[i // BATCH % len(titles)] + "\n" for i in range(samples)]
    free, free_chars, free_s = batches(loaded, prompts, {"temperature": 0.8, "max_new_chars": 80})
    shapes = [regular_form(first_poem(s.text)) for _, s, _ in free]
    quatrains = sum(1 for f in shapes if f and f[0] == "jueju")
    valid = [(f, s) for f, (_, s, _) in zip(shapes, free) if f]
    free_rhymes = sum(rhymes(even_verse_ends("\n".join(first_poem(s.text)), f[1])) for f, s in valid)

    rows, examples, cost_rows = [], [], []
    rhyme_free, rhyme_free_n = 0, 0
    for kind, chars in (("jueju", 5), ("jueju", 7), ("lushi", 5), ("lushi", 7)):
        for rhyme in (False, True):
            form = {"kind": kind, "chars_per_line": chars, "rhyme": rhyme}
            got, c_chars, c_s = _titled(loaded, prompts, form)
            ok = sum(check_text(c.form, s.text, fed) is None and s.finish_reason == "form_complete"
                     for fed, s, c in got)
            rhymed = sum(rhymes(even_verse_ends(s.text, chars)) for _, s, _ in got)
            if not rhyme:
                rhyme_free += rhymed
                rhyme_free_n += len(got)
            rows.append(f"| {kind} {chars} | {'yes' if rhyme else 'no'} | {pct(ok, len(got))} | "
                        f"{pct(rhymed, len(got))} | {c_chars / c_s:,.0f} |")
            cost_rows.append(c_chars / c_s)
    md += [
        "Unconstrained (temperature 0.8, prompt = a validation title + `\\n`, 80 characters, first poem "
        "of the text):", "",
        "| measure | value |", "| --- | --- |",
        f"| valid 绝句 (2 couplet lines of 5 or 7 characters, right punctuation) | {pct(quatrains, samples)} |",
        f"| valid 绝句 or 律诗 | {pct(len(valid), samples)} |",
        f"| of those, even verses rhyme (中华新韵 groups) | {pct(free_rhymes, len(valid))} |",
        f"| validation poems in regular form whose even verses rhyme | {pct(corpus_rhymes, len(regular))} |",
        f"| throughput, {BATCH} rows a batch | {free_chars / free_s:,.0f} chars/s |",
        "",
        "Under the form (temperature 0.8, the same titles given as `form.title`):", "",
        "| form | rhyme | valid (count, punctuation, title, finish `form_complete`) | even verses rhyme | chars/s |",
        "| --- | --- | --- | --- | --- |",
        *rows, "",
        f"Cost of the constraints: {free_chars / free_s:,.0f} chars/s unconstrained vs "
        f"{sum(cost_rows) / len(cost_rows):,.0f} chars/s under forms (mean of the rows above), "
        f"{100 * (1 - sum(cost_rows) / len(cost_rows) / (free_chars / free_s)):+.0f}% slower.", "",
    ]
    # ten example poems
    showcase = [
        ({"kind": "jueju", "chars_per_line": 5, "title": titles[0]}, 0.8),
        ({"kind": "jueju", "chars_per_line": 7, "title": titles[1], "rhyme": True}, 0.8),
        ({"kind": "jueju", "chars_per_line": 5, "title": "春晓", "rhyme": True}, 0.7),
        ({"kind": "jueju", "chars_per_line": 7, "title": "秋夜", "rhyme": True}, 0.7),
        ({"kind": "lushi", "chars_per_line": 5, "title": titles[2], "rhyme": True}, 0.8),
        ({"kind": "lushi", "chars_per_line": 7, "title": "送友人", "rhyme": True}, 0.7),
        ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬", "title": "四时", "rhyme": True}, 0.7),
        ({"kind": "jueju", "chars_per_line": 7, "acrostic": "风花雪月", "title": "风花雪月", "rhyme": True}, 0.7),
        ({"kind": "jueju", "chars_per_line": 5, "acrostic": "山高水长", "rhyme": True}, 0.0),
        ({"kind": "lushi", "chars_per_line": 5, "acrostic": "一二三四五六七八", "title": "数", "rhyme": True}, 0.7),
    ]
    md += ["Ten example poems (first sample of seed 1):", ""]
    for form, temperature in showcase:
        prepared = prepare_form(form, loaded)
        s = generate(loaded, prepared.prompt, SamplingParams(n=1, seed=1, temperature=temperature),
                     constraint=lambda i: prepared.new_constraint())[0]
        extras = {k: v for k, v in form.items() if k not in ("kind", "chars_per_line")}
        md += [f"`{form['kind']}` {form['chars_per_line']}, temperature {temperature}, "
               + ", ".join(f"{k}={v}" for k, v in extras.items()), "", "```", prepared.prompt + s.text, "```", ""]
    return md


def _titled(loaded: LoadedModel, prompts: list[str], form: dict):
    """Constrained samples, each batch under the title its unconstrained twin had."""
    out, chars, seconds = [], 0, 0.0
    for start in range(0, len(prompts), BATCH):
        title = prompts[start].rstrip("\n")
        got, c, s = batches(loaded, [""] * min(BATCH, len(prompts) - start),
                            {"temperature": 0.8, "max_new_chars": 80}, {**form, "title": title})
        out += got
        chars += c
        seconds += s
    return out, chars, seconds


# --------------------------------------------------------------------------- Stacks
def closes_itself(prompt: str, text: str) -> bool:
    """Whether the model closed everything the prompt opened, balanced, before the text ended."""
    state = LatexState().read(prompt)
    for ch in text:
        state = state.step(ch) if state else None
        if state is None:
            return False
        if not state.stack and state.mode == 0:
            return True
    return False


def stacks_report(loaded: LoadedModel, samples: int, budget: int) -> list[str]:
    md = [f"### LaTeX: `{loaded.name}`", "",
          f"Temperature 0.8, {budget} characters; balanced = every `\\begin`/`\\end` nested and closed, "
          "braces and `$` closed, when the text ends.", "",
          "| prompt | form | balanced at the end | environment closed by the model itself (budget never bound) | "
          "longest overrun of max_new_chars | chars/s |", "| --- | --- | --- | --- | --- | --- |"]
    rates = {}
    excerpts = []
    for environment in ("lemma", "proof", None):
        prompt_label = f"`\\begin{{{environment}}}`" if environment else "(empty)"
        opening = f"\\begin{{{environment}}}\n" if environment else ""
        params = {"temperature": 0.8, "max_new_chars": budget}
        free, f_chars, f_s = batches(loaded, [opening] * samples, params)
        ok = sum(is_balanced(fed + s.text) for fed, s, _ in free)
        closed = sum(closes_itself(fed, s.text) for fed, s, _ in free) if environment else 0
        md.append(f"| {prompt_label} | none | {pct(ok, samples)} | {pct(closed, samples) if environment else '-'} "
                  f"| - | {f_chars / f_s:,.0f} |")
        form = {"kind": "latex", "environment": environment}
        prepared = prepare_form(form, loaded)
        got, c_chars, c_s = batches(loaded, [""] * samples, params, form)
        ok = sum(check_text(prepared.form, s.text, fed) is None for fed, s, _ in got)
        itself = sum(s.finish_reason == "form_complete" and not c.forced for _, s, c in got)
        over = max(s.generated_chars - budget for _, s, _ in got)
        md.append(f"| {prompt_label} | latex | {pct(ok, samples)} | "
                  f"{pct(itself, samples) if environment else '-'} "
                  f"| {max(over, 0)} | {c_chars / c_s:,.0f} |")
        rates[environment] = (f_chars / f_s, c_chars / c_s)
        if environment:
            fed, s, _ = got[0]
            excerpts += [f"`{{\"kind\": \"latex\", \"environment\": \"{environment}\"}}`, seed 0, "
                         f"{s.generated_chars} characters, finish `{s.finish_reason}`:", "", "```latex",
                         fed + s.text, "```", ""]
    free_rate = sum(r[0] for r in rates.values()) / len(rates)
    form_rate = sum(r[1] for r in rates.values()) / len(rates)
    md += ["", f"Cost of the constraint: {free_rate:,.0f} chars/s unconstrained vs {form_rate:,.0f} chars/s "
               f"under the form ({100 * (1 - form_rate / free_rate):+.0f}% slower).", "",
           "Two excerpts:", "", *excerpts]
    return md


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tang", nargs="*", default=[], help="Tang export folders")
    parser.add_argument("--stacks", nargs="*", default=[], help="Stacks export folders")
    parser.add_argument("--samples", type=int, default=64, help="samples per condition (multiple of 16)")
    parser.add_argument("--latex-chars", type=int, default=300, help="max_new_chars of the LaTeX samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--data-dir", default="/work/shared/data", help="the shared corpora (Tang val titles)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    md = ["## Forms report", "",
          f"`python benchmarks/forms_report.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
          f"{platform.machine()} with {args.threads} torch thread(s), torch {torch.__version__}; "
          f"{args.samples} samples per condition, batches of {BATCH}.", ""]
    for path in args.tang:
        md += tang_report(load_export(path), args.samples, Path(args.data_dir))
    for path in args.stacks:
        md += stacks_report(load_export(path), args.samples, args.latex_chars)
    print("\n".join(md))


if __name__ == "__main__":
    main()
