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
from textgen.forms import check_text, prepare_form  # noqa: E402
from textgen.forms.books import rhymes  # noqa: E402
from textgen.forms.latex import is_balanced  # noqa: E402
from textgen.forms.tang import even_verse_ends  # noqa: E402
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


# --------------------------------------------------------------------------- cost
def cost(loaded: LoadedModel, free_prompt: str, forms: list[dict], chars: int, repeats: int = 3) -> list[str]:
    """Throughput with and without forms (best of ``repeats``, interleaved, one batch of BATCH
    rows at temperature 0.8), and the constraint's own time per character, replayed alone."""
    def best(prompt: str, prepared=None) -> float:
        params = SamplingParams(n=BATCH, seed=0, temperature=0.8, max_new_chars=chars)
        began = time.perf_counter()
        samples = generate(loaded, prompt, params,
                           constraint=(lambda i: prepared.new_constraint()) if prepared else None)
        return sum(s.generated_chars for s in samples) / (time.perf_counter() - began)

    prepared = [prepare_form(form, loaded) for form in forms]
    free, under = [], [[] for _ in forms]
    for _ in range(repeats):
        free.append(best(free_prompt))
        for rates, prep in zip(under, prepared):
            rates.append(best(prep.prompt, prep))
    rows = [f"| none (prompt `{free_prompt.strip()}`) | {max(free):,.0f} | - | - |"]
    for form, prep, rates in zip(forms, prepared, under):
        text = generate(loaded, prep.prompt, SamplingParams(n=BATCH, seed=1, max_new_chars=chars),
                        constraint=lambda i: prep.new_constraint())
        ids = [[loaded.tokenizer.encode(ch)[0] for ch in s.text] for s in text]
        began, n = time.perf_counter(), 0
        for sample, tokens in zip(text, ids):
            constraint = prep.new_constraint()
            for k, (ch, token) in enumerate(zip(sample.text, tokens)):
                constraint.set_remaining(chars - k)
                constraint.allowed()
                constraint.advance(token, ch)
                n += 1
        micros = 1e6 * (time.perf_counter() - began) / max(n, 1)
        label = ", ".join(f"{k}={v}" for k, v in form.items() if v is not None)
        rows.append(f"| {label} | {max(rates):,.0f} | {100 * (1 - max(rates) / max(free)):+.0f}% | {micros:.1f} µs |")
    return [f"Cost of the constraints ({BATCH} rows a batch, up to {chars} characters, best of {repeats} "
            "interleaved runs; the last column replays samples through fresh constraints alone: "
            "`set_remaining` + `allowed` + `advance` per character):", "",
            "| form | chars/s | slower than none | constraint time per character |",
            "| --- | --- | --- | --- |", *rows, ""]


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
    free, _, _ = batches(loaded, prompts, {"temperature": 0.8, "max_new_chars": 80})
    shapes = [regular_form(first_poem(s.text)) for _, s, _ in free]
    quatrains = sum(1 for f in shapes if f and f[0] == "jueju")
    valid = [(f, s) for f, (_, s, _) in zip(shapes, free) if f]
    free_rhymes = sum(rhymes(even_verse_ends("\n".join(first_poem(s.text)), f[1])) for f, s in valid)

    rows = []
    rhyme_free, rhyme_free_n = 0, 0
    for kind, chars in (("jueju", 5), ("jueju", 7), ("lushi", 5), ("lushi", 7)):
        for rhyme in (False, True):
            form = {"kind": kind, "chars_per_line": chars, "rhyme": rhyme}
            got, _, _ = _titled(loaded, prompts, form)
            ok = sum(check_text(c.form, s.text, fed) is None and s.finish_reason == "form_complete"
                     for fed, s, c in got)
            rhymed = sum(rhymes(even_verse_ends(s.text, chars)) for _, s, _ in got)
            if not rhyme:
                rhyme_free += rhymed
                rhyme_free_n += len(got)
            rows.append(f"| {kind} {chars} | {'yes' if rhyme else 'no'} | {pct(ok, len(got))} | "
                        f"{pct(rhymed, len(got))} |")
    md += [
        "Unconstrained (temperature 0.8, prompt = a validation title + `\\n`, 80 characters, first poem "
        "of the text):", "",
        "| measure | value |", "| --- | --- |",
        f"| valid 绝句 (2 couplet lines of 5 or 7 characters, right punctuation) | {pct(quatrains, samples)} |",
        f"| valid 绝句 or 律诗 | {pct(len(valid), samples)} |",
        f"| of those, even verses rhyme (中华新韵 groups) | {pct(free_rhymes, len(valid))} |",
        f"| validation poems in regular form whose even verses rhyme | {pct(corpus_rhymes, len(regular))} |",
        "",
        "Under the form (temperature 0.8, the same titles given as `form.title`):", "",
        "| form | rhyme | valid (count, punctuation, title, finish `form_complete`) | even verses rhyme |",
        "| --- | --- | --- | --- |",
        *rows, "",
        *cost(loaded, titles[0] + "\n", [
            {"kind": "jueju", "chars_per_line": 5, "title": titles[0]},
            {"kind": "lushi", "chars_per_line": 7, "title": titles[0], "rhyme": True},
            {"kind": "jueju", "chars_per_line": 7, "title": titles[0], "acrostic": "春夏秋冬", "rhyme": True},
        ], chars=67),
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
    """Whether the model closed, balanced, everything the prompt opened before the text ended (the
    shortest prefix of ``text`` after which ``prompt + prefix`` is balanced, when the prompt is not)."""
    if is_balanced(prompt):
        return False
    return any(is_balanced(prompt + text[:end]) for end in range(1, len(text) + 1) if text[end - 1] == "}")


def stacks_report(loaded: LoadedModel, samples: int, budget: int) -> list[str]:
    md = [f"### LaTeX: `{loaded.name}`", "",
          f"Temperature 0.8, {budget} characters; balanced = every `\\begin`/`\\end` nested and closed, "
          "braces and `$` closed, when the text ends.", "",
          "| prompt | form | balanced at the end | environment closed by the model itself (budget never bound) | "
          "longest overrun of max_new_chars |", "| --- | --- | --- | --- | --- |"]
    excerpts = []
    for environment in ("lemma", "proof", None):
        prompt_label = f"`\\begin{{{environment}}}`" if environment else "(empty)"
        opening = f"\\begin{{{environment}}}\n" if environment else ""
        params = {"temperature": 0.8, "max_new_chars": budget}
        free, _, _ = batches(loaded, [opening] * samples, params)
        ok = sum(is_balanced(fed + s.text) for fed, s, _ in free)
        closed = sum(closes_itself(fed, s.text) for fed, s, _ in free) if environment else 0
        md.append(f"| {prompt_label} | none | {pct(ok, samples)} | {pct(closed, samples) if environment else '-'} "
                  f"| - |")
        form = {"kind": "latex", "environment": environment}
        prepared = prepare_form(form, loaded)
        got, _, _ = batches(loaded, [""] * samples, params, form)
        ok = sum(check_text(prepared.form, s.text, fed) is None for fed, s, _ in got)
        itself = sum(s.finish_reason == "form_complete" and not c.forced for _, s, c in got)
        over = max(s.generated_chars - budget for _, s, _ in got)
        md.append(f"| {prompt_label} | latex | {pct(ok, samples)} | "
                  f"{pct(itself, samples) if environment else '-'} "
                  f"| {max(over, 0)} |")
        if environment:
            fed, s, _ = got[0]
            excerpts += [f"`{{\"kind\": \"latex\", \"environment\": \"{environment}\"}}`, seed 0, "
                         f"{s.generated_chars} characters, finish `{s.finish_reason}`:", "", "```latex",
                         fed + s.text, "```", ""]
    md += ["", *cost(loaded, "\\begin{lemma}\n", [{"kind": "latex", "environment": "lemma"},
                                                  {"kind": "latex", "environment": None}], chars=budget),
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
