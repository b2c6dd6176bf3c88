"""Does `form: latex` text compile?  pdflatex on hundreds of samples of a shipped model.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/latex_compile.py --checkpoint checkpoints/stacks-gru \
        --out docs/results/latex-compile.json --images docs --paper

For 4 environments x 3 temperatures (16 samples each, 400 characters) and 16 longer texts after a
``\\section{...}`` prompt (1,000 characters, no environment), the same seeds with and without the
form: each returned text (the form's ``\\begin{...}``, the prompt, the continuation; without the
form, the same prompt and continuation) goes into the export's preamble + ``\\begin{document}`` ...
``\\end{document}`` and through ``pdflatex -halt-on-error`` (at most 2 at a time).  Reported: the
compile rates with failures by LaTeX's own error message, the cost of the form in characters per
second (batches of 16, best of two interleaved runs) and the bits per character the model gives the text the
form lets through (its own log-probabilities, before masking).  ``--images`` renders two excerpts
and, with ``--paper``, the first page of ``python -m textgen.paper`` to PNG with pdftoppm.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from textgen.export import load_export  # noqa: E402
from textgen.forms import prepare_form  # noqa: E402
from textgen.latex_export import PREAMBLE_FILE  # noqa: E402
from textgen.pdflatex import compile_latex, wrap_document  # noqa: E402
from textgen.sampling import SamplingParams, generate  # noqa: E402

ENVIRONMENTS = ["lemma", "proposition", "definition", "proof"]
TEMPERATURES = [0.5, 1.0, 1.5]
SECTION_PROMPT = "\\section{Introduction}\n"


def error_kind(error: str) -> str:
    """LaTeX's error message without the parts that name this document's specifics."""
    message = error.split(" l.")[0]
    message = re.sub(r"\\[A-Za-z@]+", lambda m: m.group() if m.group() in ("\\begin", "\\end") else "\\cs", message)
    return re.sub(r"on input line \d+", "", re.sub(r"\{[^}]*\}", "{...}", message)).strip()


def cells(args) -> list[dict]:
    out = [{"environment": e, "temperature": t, "prompt": "", "chars": args.chars, "n": args.n}
           for e in ENVIRONMENTS for t in TEMPERATURES]
    out.append({"environment": None, "temperature": 1.0, "prompt": SECTION_PROMPT, "chars": args.long_chars,
                "n": args.long_n})
    return out


def sample_cell(loaded, cell: dict, constrained: bool, seed: int):
    """(returned texts, chars/s, bpc) of one cell."""
    form = {"kind": "latex", "environment": cell["environment"]}
    prepared = prepare_form(form, loaded, cell["prompt"])
    params = SamplingParams(n=cell["n"], seed=seed, temperature=cell["temperature"], max_new_chars=cell["chars"],
                            return_logprobs=True)
    started = time.perf_counter()
    got = generate(loaded, prepared.prompt, params,
                   constraint=(lambda i: prepared.new_constraint()) if constrained else None)
    seconds = time.perf_counter() - started
    chars = sum(s.generated_chars for s in got)
    bpc = -sum(s.logprob for s in got) / max(chars, 1) / math.log(2)
    return [prepared.prompt + s.text for s in got], chars / seconds, bpc, got


def compile_all(preamble: str, texts: list[str], timeout: float) -> list:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda t: compile_latex(wrap_document(preamble, t), timeout_s=timeout), texts))


def render(document: str, png: Path, crop_height: int, timeout: float) -> None:
    """The top of the first page of ``document`` as a PNG (pdftoppm, 110 dpi)."""
    result = compile_latex(document, timeout_s=timeout, keep_pdf=True)
    if not result.ok:
        raise RuntimeError(result.error)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "excerpt.pdf"
        pdf.write_bytes(result.pdf)
        render_pdf(pdf, png, crop_height)


def render_pdf(pdf: Path, png: Path, crop_height: int | None) -> None:
    crop = ["-x", "90", "-y", "100", "-W", "760", "-H", str(crop_height)] if crop_height else []
    subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", *crop, str(pdf),
                    str(png.with_suffix(""))], check=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/stacks-gru")
    parser.add_argument("--n", type=int, default=16, help="samples per environment and temperature (at most 16)")
    parser.add_argument("--chars", type=int, default=400)
    parser.add_argument("--long-n", type=int, default=16)
    parser.add_argument("--long-chars", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    parser.add_argument("--images", type=Path, default=None, help="folder for the PNGs")
    parser.add_argument("--paper", action="store_true", help="also write a paper and render its first page")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_export(args.checkpoint)
    preamble = (loaded.path / PREAMBLE_FILE).read_text(encoding="utf-8")
    rows, excerpts = [], []
    for i, cell in enumerate(cells(args)):
        seed = args.seed + 100 * i
        free, free_speed, free_bpc, _ = sample_cell(loaded, cell, False, seed)
        formed, form_speed, form_bpc, got = sample_cell(loaded, cell, True, seed)
        free_speed = max(free_speed, sample_cell(loaded, cell, False, seed)[1])  # interleaved, best of two
        form_speed = max(form_speed, sample_cell(loaded, cell, True, seed)[1])
        results = {"form": compile_all(preamble, formed, args.timeout), "none": compile_all(preamble, free, args.timeout)}
        row = {**cell, "chars_per_s": {"none": round(free_speed, 1), "form": round(form_speed, 1)},
               "bpc": {"none": round(free_bpc, 4), "form": round(form_bpc, 4)},
               "finish": dict(Counter(s.finish_reason for s in got))}
        for key, res in results.items():
            row[f"compiled_{key}"] = sum(r.ok for r in res)
            row[f"failures_{key}"] = dict(Counter(error_kind(r.error) for r in res if not r.ok))
        row["failed_texts_form"] = [t for t, r in zip(formed, results["form"]) if not r.ok][:3]
        rows.append(row)
        excerpts.append(next((t for t in formed if len(t) > 250), formed[0]))  # a sample with a body
        print(f"{cell['environment']} t={cell['temperature']}: form {row['compiled_form']}/{cell['n']}, "
              f"none {row['compiled_none']}/{cell['n']}; chars/s {free_speed:.0f} -> {form_speed:.0f}; "
              f"bpc {free_bpc:.3f} -> {form_bpc:.3f}", file=sys.stderr, flush=True)
    summary = summarize(rows)
    report = {"checkpoint": str(args.checkpoint), "command": "python benchmarks/latex_compile.py " + " ".join(sys.argv[1:]),
              "torch_threads": args.threads, "summary": summary, "cells": rows}
    if args.images:
        args.images.mkdir(parents=True, exist_ok=True)
        render(wrap_document(preamble, excerpts[0]), args.images / "latex-excerpt-lemma.png", 330, args.timeout)
        render(wrap_document(preamble, excerpts[len(TEMPERATURES) * 3 + 1]), args.images / "latex-excerpt-proof.png",
               330, args.timeout)
        report["excerpts"] = {"latex-excerpt-lemma.png": excerpts[0],
                              "latex-excerpt-proof.png": excerpts[len(TEMPERATURES) * 3 + 1]}
        if args.paper:
            report["paper"] = write_paper(args)
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def summarize(rows: list[dict]) -> dict:
    total = sum(r["n"] for r in rows)
    failures: dict[str, Counter] = {"form": Counter(), "none": Counter()}
    for r in rows:
        for key in failures:
            failures[key].update(r[f"failures_{key}"])
    return {"samples": total,
            "compiled_form": sum(r["compiled_form"] for r in rows),
            "compiled_none": sum(r["compiled_none"] for r in rows),
            "failures_form": dict(failures["form"].most_common()),
            "failures_none": dict(failures["none"].most_common())}


def write_paper(args) -> dict:
    """``python -m textgen.paper`` with its defaults and seed 1; the first page to PNG."""
    pdf = Path(tempfile.mkdtemp(prefix="textgen-paper-")) / "paper.pdf"  # only its first page is kept
    command = [sys.executable, "-m", "textgen.paper", f"checkpoint={args.checkpoint}", f"out={pdf}", "seed=1"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    render_pdf(pdf, args.images / "paper-stacks-gru-page1.png", None)
    pages = re.search(r"(\d+) pages?", done.stdout)
    return {"command": "python -m textgen.paper " + " ".join(command[3:]).replace(str(pdf), "paper.pdf"), "pages": int(pages.group(1)) if pages else None,
            "seconds": round(time.perf_counter() - started, 1), "stdout": done.stdout}


if __name__ == "__main__":
    raise SystemExit(main())
