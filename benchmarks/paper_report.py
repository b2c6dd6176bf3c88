"""Do papers read like papers?  ``python -m textgen.paper``'s writer over many seeds, by pdflatex's log.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/paper_report.py --checkpoint checkpoints/stacks-gru \\
        --seeds 1-20 --out docs/results/paper-report.json --images docs

For each seed, the paper of ``conf/paper.yaml``'s defaults (one model load for all) is written,
compiled as the command compiles it (pdflatex, BibTeX, pdflatex twice) and read back from the
log: pages, undefined references and citations, overfull boxes (and how wide), sections with no
text, pieces that do not end at a sentence end outside math, the references and what they point
to (the environment of their label), seconds per paper, and the bits per character the model gives
what it wrote (its own log-probabilities, before the form's masks).  ``--ablate-seeds`` writes
those seeds again with each new rule off in turn (:class:`textgen.forms.latex.Rules`): the
difference in bits per character is what the rule costs the model.  ``--rule-costs N`` measures the
same more cheaply: after the body of the first seed's paper, N pieces of each kind the rule acts on
(a paragraph for references, citations and sentence ends, an ``equation`` for widths), sampled as
the paper samples them (same share, same temperature, same seeds) with the rule on and off.
``--images`` renders pages 1 and 2 of the first paper with pdftoppm.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.paper_schemas import PAPER_DEFAULTS  # noqa: E402
from textgen.export import load_export  # noqa: E402
from textgen.forms.latex import latex_tables  # noqa: E402
from textgen.machine import cpu_capability  # noqa: E402
from textgen.paper import PIECE_RULES, PaperWriter  # noqa: E402

OVERFULL = re.compile(r"^Overfull \\hbox \(([\d.]+)pt too wide\)", re.M)
UNDEFINED_REF = re.compile(r"LaTeX Warning: Reference `([^']*)' on page \d+ undefined")
UNDEFINED_CITE = re.compile(r"LaTeX Warning: Citation `([^']*)' on page \d+ undefined")
LABEL = re.compile(r"\\label\{([^}]*)\}")
REF = re.compile(r"\\(?:eq)?ref\{([^}]*)\}")
ENV = re.compile(r"\\(begin|end)\{([^}]*)\}")
ABLATIONS = {"resolved_refs": "references resolve", "known_cites": "citations from the bibliography",
             "bounded_width": "formula widths bounded", "sentences": "pieces end at a sentence end"}
OVERFULL_LIMIT_PT = 10.0


def parse_seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def label_environments(tex: str) -> dict[str, str]:
    """label -> the innermost environment it is defined in ("" at the top level)."""
    found, stack = {}, []
    for match in re.finditer(r"\\(begin|end)\{([^}]*)\}|\\label\{([^}]*)\}", tex):
        if match.group(1) == "begin":
            stack.append(match.group(2))
        elif match.group(1) == "end":
            if stack:
                stack.pop()
        else:
            found[match.group(3)] = stack[-1] if stack else ""
    return found


def empty_sections(body: str) -> int:
    """Sections whose text (after the title) holds no letter before the next section."""
    parts = re.split(r"\\section\{[^}]*\}", body)[1:]
    return sum(1 for part in parts if not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", part)))


def ends_at_sentence(piece: str) -> bool:
    """Whether a piece, without its closing ``\\end{...}``s and spaces, ends with ``.``, ``?`` or ``!``
    outside math, or with a display (``$$ ... $$``, ``\\[ ... \\]``) whose last character is its
    period, as printed mathematics ends a sentence at a display."""
    text = piece.rstrip()
    while True:
        stripped = re.sub(r"\\end\{[^}]*\}\s*$", "", text).rstrip()
        if stripped == text:
            break
        text = stripped
    display = re.search(r"(\$\$|\\\])$", text)
    dollars = len(re.findall(r"(?<!\\)\$", text))
    if display:
        return text[: display.start()].rstrip()[-1:] == "." and dollars % 2 == 0
    return text[-1:] in (".", "?", "!") and dollars % 2 == 0


def one_paper(loaded, cfg, seed: int, rules, timeout: float) -> tuple:
    cfg = OmegaConf.merge(cfg, {"seed": seed})
    torch.manual_seed(seed)
    started = time.perf_counter()
    writer = PaperWriter(loaded, cfg, rules)
    paper = writer.write()
    seconds = time.perf_counter() - started
    result = paper.compile(timeout)
    log = result.log
    widths = [float(w) for w in OVERFULL.findall(log)]
    labels = label_environments(paper.document)
    refs = REF.findall(paper.document)
    vocab = writer.grammar.vocab
    numbered = [r for r in refs if vocab.environments.get(labels.get(r, ""), {}).get("role") in ("theorem", "display")]
    prose = [(block, text) for block, text in writer.written if block != "title"
             and vocab.environments.get(block, {}).get("role") != "display"]
    return {"seed": seed, "compiled": result.ok, "error": result.error, "pages": result.pages,
            "seconds": round(seconds, 1), "chars": paper.chars,
            "bpc": round(-writer.logprob / max(paper.chars, 1) / math.log(2), 4),
            "undefined_refs": len(UNDEFINED_REF.findall(log)), "undefined_cites": len(UNDEFINED_CITE.findall(log)),
            "bibtex_missing": result.bibtex_log.count("I didn't find a database entry"),
            "overfull": len(widths), "overfull_over_10pt": sum(w > OVERFULL_LIMIT_PT for w in widths),
            "widest_overfull_pt": max(widths, default=0.0),
            "empty_sections": empty_sections(paper.body),
            "pieces": len(prose), "pieces_not_ending_a_sentence": sum(not ends_at_sentence(t) for _, t in prose),
            "labels": len(labels), "refs": len(refs), "refs_to_numbered": len(numbered),
            "cites": len(paper.citations)}, paper, result


_WORKER: dict = {}


def _start_worker(checkpoint: str, cfg: dict, threads: int, timeout: float) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(loaded=load_export(checkpoint), cfg=OmegaConf.create(cfg), timeout=timeout)


def _worker_paper(seed: int) -> tuple[dict, bytes | None]:
    row, _, result = one_paper(_WORKER["loaded"], _WORKER["cfg"], seed, PIECE_RULES, _WORKER["timeout"])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row, result.pdf


def summarize(rows: list[dict]) -> dict:
    total = {k: sum(r[k] for r in rows) for k in ("undefined_refs", "undefined_cites", "bibtex_missing", "overfull",
                                                   "overfull_over_10pt", "empty_sections", "pieces",
                                                   "pieces_not_ending_a_sentence", "refs", "refs_to_numbered",
                                                   "cites", "labels")}
    return {"papers": len(rows), "compiled": sum(r["compiled"] for r in rows),
            "pages_min": min(r["pages"] for r in rows), "pages_median": statistics.median(r["pages"] for r in rows),
            "pages_max": max(r["pages"] for r in rows),
            "widest_overfull_pt": max(r["widest_overfull_pt"] for r in rows),
            "seconds_per_paper_median": statistics.median(r["seconds"] for r in rows),
            "bpc_mean": round(statistics.fmean(r["bpc"] for r in rows), 4), **total}


RULE_PIECES = {"resolved_refs": None, "known_cites": None, "bounded_width": "equation", "sentences": None}


def rule_costs(loaded, cfg, context: str, n: int) -> dict:
    """bpc of N pieces after ``context`` with each rule on and off (what the rule costs the model)."""
    from textgen.forms.latex import prepare_latex
    from textgen.sampling import SamplingParams, generate

    share = max(int(cfg.min_block_chars), int(cfg.max_chars) // (int(cfg.sections) * (1 + len(cfg.blocks))))  # PaperWriter's
    costs = {}
    for rule, environment in RULE_PIECES.items():
        row = {"rule": ABLATIONS[rule], "piece": environment or "text", "n": n, "share_chars": share}
        for label, rules in (("on", PIECE_RULES), ("off", replace(PIECE_RULES, **{rule: False}))):
            prepared = prepare_latex(loaded, environment, "\\label{" if environment else "", context, rules)

            def constraint(index: int, prepared=prepared):
                form = prepared.new_constraint()
                form.close_after_sentence(share, int(cfg.word_chars))
                return form
            params = SamplingParams(n=n, seed=1, temperature=float(cfg.temperature), return_logprobs=True,
                                    max_new_chars=share + int(cfg.sentence_chars))
            started = time.perf_counter()
            got = generate(loaded, prepared.prompt, params, constraint=constraint)
            chars = sum(g.generated_chars for g in got)
            row[f"bpc_{label}"] = round(-sum(g.logprob for g in got) / max(chars, 1) / math.log(2), 4)
            row[f"chars_{label}"] = chars
            row[f"seconds_{label}"] = round(time.perf_counter() - started, 1)
            row[f"refs_{label}"] = sum(len(REF.findall(g.text)) for g in got)
            row[f"cites_{label}"] = sum(g.text.count("\\cite{") for g in got)
        row["cost_bpc"] = round(row["bpc_on"] - row["bpc_off"], 4)
        costs[rule] = row
        print(f"{rule}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return costs


def render_pages(pdf: bytes, folder: Path, stem: str) -> list[str]:
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paper.pdf"
        path.write_bytes(pdf)
        for page in (1, 2):
            png = folder / f"{stem}-page{page}.png"
            subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile", str(path),
                            str(png.with_suffix(""))], check=True, timeout=120)
            names.append(png.name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/stacks-gru")
    parser.add_argument("--seeds", default="1-20", help="first-last")
    parser.add_argument("--ablate-seeds", default="", help="first-last: also write these with each rule off")
    parser.add_argument("--rule-costs", type=int, default=0, help="pieces per rule and setting (0: none)")
    parser.add_argument("--context", type=Path, default=None,
                        help="for --rule-costs: a paper.tex whose body the pieces follow (default: the first paper's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="papers written at once, one process each")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    parser.add_argument("--images", type=Path, default=None, help="folder for pages 1 and 2 of the first paper")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_export(args.checkpoint)
    if latex_tables(loaded.tokenizer, loaded.path) is None:
        parser.error(f"{args.checkpoint} has no latex.json/preamble.tex")
    cfg = OmegaConf.create({**PAPER_DEFAULTS, "checkpoint": args.checkpoint})  # what the command composes
    rows, images, first_body = [], [], None
    if args.context:
        document = args.context.read_text(encoding="utf-8")
        first_body = document[document.index("\\maketitle") + len("\\maketitle"):].split("\\bibliographystyle")[0]
        first_body = first_body.replace("\\end{document}", "").strip() + "\n\n"
    seeds = parse_seeds(args.seeds) if args.seeds else []
    if args.jobs > 1 and seeds:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, initializer=_start_worker,
                                 initargs=(args.checkpoint, OmegaConf.to_container(cfg), args.threads,
                                           args.timeout)) as pool:
            done = list(pool.map(_worker_paper, seeds))
        rows = [row for row, _ in done]
        if args.images and done[0][1]:
            args.images.mkdir(parents=True, exist_ok=True)
            images = render_pages(done[0][1], args.images, f"paper-{loaded.name}-seed{seeds[0]}")
        seeds = []  # written
    for seed in seeds:
        row, paper, result = one_paper(loaded, cfg, seed, PIECE_RULES, args.timeout)
        first_body = first_body or paper.body
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if args.images and not images and result.pdf:
            args.images.mkdir(parents=True, exist_ok=True)
            images = render_pages(result.pdf, args.images, f"paper-{loaded.name}-seed{seed}")
    report = {"checkpoint": args.checkpoint, "command": "python benchmarks/paper_report.py " + " ".join(sys.argv[1:]),
              "torch_threads": args.threads, "jobs": args.jobs, "capability": cpu_capability(),
              "summary": summarize(rows) if rows else None, "papers": rows,
              "images": images}
    if args.rule_costs:
        report["rule_costs"] = rule_costs(loaded, cfg, first_body, args.rule_costs)
    if args.ablate_seeds:
        seeds = parse_seeds(args.ablate_seeds)
        base = [r for r in rows if r["seed"] in seeds]
        ablations = {}
        for rule, what in ABLATIONS.items():
            off = [one_paper(loaded, cfg, seed, replace(PIECE_RULES, **{rule: False}), args.timeout)[0] for seed in seeds]
            ablations[rule] = {"rule": what, "seeds": seeds,
                               "bpc_with": round(statistics.fmean(r["bpc"] for r in base), 4),
                               "bpc_without": round(statistics.fmean(r["bpc"] for r in off), 4),
                               "without": summarize(off)}
            print(f"{rule}: {json.dumps(ablations[rule])}", file=sys.stderr, flush=True)
        report["ablations"] = ablations
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
