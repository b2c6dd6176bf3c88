"""The ``ci`` form measured on an export (the figures of docs/FORMS.md's 词 section).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/ci_report.py --checkpoint checkpoints/tang-gru \\
        [--tunes 10] [--samples 8] [--data-dir ../shared/data] > docs/results/ci-report-tang-gru.md

For the most common tunes of the tune book: how the validation ci of the tune hold up (in a kept
shape; keeping its rhymes and fixed tones by the form's own check; by the independent checker of
``tests/ci_rules.py``), how the model's unconstrained samples after the tune line do, and how its
samples under the form do, with the form's cost in chars/s.  Then one example ci per tune.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import ci_rules  # noqa: E402  the independent checker

from textgen.export import load_export  # noqa: E402
from textgen.forms.ci import FORM_KIND  # noqa: E402
from textgen.forms.ci.tunebook import tune_book  # noqa: E402
from textgen.forms.ci.tunebook_build import parse_ci, shape_key  # noqa: E402
from textgen.sampling import SamplingParams, generate  # noqa: E402


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "-"


def holds(loaded, tune, body: str, train: Path) -> tuple[bool, bool, bool]:
    """(in a kept shape, the form's own check passes, the independent checker passes) for one ci body."""
    parsed = parse_ci(f"{tune.name}\n{body}")
    if parsed is None:
        return False, False, False
    key = shape_key(parsed[1])
    variant = next((v for v in tune.variants
                    if tuple((s.length, s.line_end) for s in v.sentences) == key), None)
    if variant is None:
        return False, False, False
    spec = FORM_KIND.parse({"kind": "ci", "tune": tune.name, "variant": variant.index}, loaded)
    own = FORM_KIND.check(spec, body) is None
    independent = not ci_rules.ci_problems(body, tune.name, train, variant=variant.index)
    return True, own, independent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tang-gru"))
    parser.add_argument("--tunes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("TEXTGEN_DATA_DIR", REPO.parent / "shared" / "data")))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    loaded = load_export(args.checkpoint)
    train, val = args.data_dir / "songci" / "train.txt", args.data_dir / "songci" / "val.txt"
    book = tune_book()
    tunes = list(book.tunes.values())[: args.tunes]
    val_by_tune: dict[str, list[str]] = {}
    for block in val.read_text(encoding="utf-8").split("\n\n"):
        name, _, body = block.strip("\n").partition("\n")
        val_by_tune.setdefault(name, []).append(body)
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in Path("/proc/cpuinfo").read_text()]
    print(f"# The ci form on `{loaded.name}`\n\n{platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s), flags {' '.join(flags)}; {args.samples} samples per tune at "
          f"temperature {args.temperature}, seeds from 1.\n")
    print("| tune | val ci: kept shape / own check / checker | model alone: kept shape / checker | "
          "under the form: checker | form chars/s | alone chars/s |\n|---|---|---|---|---|---|")
    examples = []
    totals = [0] * 6
    for tune in tunes:
        real = [holds(loaded, tune, body, train) for body in val_by_tune.get(tune.name, [])]
        params = SamplingParams(n=args.samples, seed=1, temperature=args.temperature,
                                max_new_chars=tune.variants[0].chars + len(tune.variants[0].sentences) * 2)
        started = time.perf_counter()
        alone = generate(loaded, f"{tune.name}\n", params)
        alone_seconds = time.perf_counter() - started
        alone_chars = sum(len(s.text) for s in alone)
        free = [holds(loaded, tune, s.text.split("\n\n")[0].strip("\n"), train) for s in alone]
        spec = FORM_KIND.parse({"kind": "ci", "tune": tune.name}, loaded)
        prepared = FORM_KIND.prepare(spec, loaded, "")
        started = time.perf_counter()
        formed = generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())
        form_seconds = time.perf_counter() - started
        form_chars = sum(len(s.text) for s in formed)
        checked = [not ci_rules.ci_problems(s.text, tune.name, train) and s.finish_reason == "form_complete"
                   for s in formed]
        examples.append((tune.name, formed[0].text))
        print(f"| {tune.name} | {pct(sum(r[0] for r in real), len(real))} / {pct(sum(r[1] for r in real), len(real))}"
              f" / {pct(sum(r[2] for r in real), len(real))} | {pct(sum(f[0] for f in free), len(free))} / "
              f"{pct(sum(f[2] for f in free), len(free))} | {pct(sum(checked), len(checked))} | "
              f"{form_chars / form_seconds:.0f} | {alone_chars / alone_seconds:.0f} |", flush=True)
        for i, value in enumerate((sum(r[0] for r in real), sum(r[2] for r in real), len(real),
                                   sum(f[0] for f in free), sum(checked), len(checked))):
            totals[i] += value
    print(f"\nAll: val ci in a kept shape {pct(totals[0], totals[2])}, holding every rule by the checker "
          f"{pct(totals[1], totals[2])}; model alone in a kept shape {pct(totals[3], totals[5])}; under the form "
          f"{pct(totals[4], totals[5])} by the checker.\n")
    print("## Examples (the first sample of each tune under the form)\n")
    for name, text in examples:
        print(f"**{name}**\n\n```\n{text}\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
