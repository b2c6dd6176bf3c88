"""How much ``best_of`` lowers the bits per character of the poems it returns.

    python benchmarks/best_of_bpc.py --checkpoint checkpoints/tang-gru --titles 12 --seeds 4 \\
        --best-of 1 4 8 --chars 5 7 --threads 1 --out docs/results/best-of-tang-gru.json

For each form (绝句 of ``--chars`` characters a verse), each of ``--titles`` validation titles and
each seed, one poem (n=1) is drawn with every ``best_of``, at temperature 0.8 under ``form.title``.
The returned poem is then scored by the model with :func:`textgen.evaluation.continuation_logprobs`
(its forward pass, after the title line, not the sampler's own numbers), in bits per character.
The same seed gives candidate 0 of every ``best_of``, so the conditions are paired: ``best_of`` 1
is candidate 0 alone.  Every (title, seed) has seeds of its own, no candidate shared with another.
The real validation poem under the same title is scored too, for scale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.forms_report import regular_form, val_poems  # noqa: E402
from textgen.evaluation import continuation_logprobs  # noqa: E402
from textgen.export import LoadedModel, load_export  # noqa: E402
from textgen.forms import prepare_form  # noqa: E402
from textgen.sampling import MAX_SAMPLES, SamplingParams, generate  # noqa: E402

SEED_STRIDE = 10_000  # the seeds of title t start at SEED_STRIDE * t; candidate j of seed s is s + j


def bpc(loaded: LoadedModel, prompt: str, text: str) -> float:
    """Bits per character of ``text`` after ``prompt``, as the model scores it."""
    values = continuation_logprobs(loaded, prompt, text)
    return -math.fsum(values) / math.log(2) / len(values)


def titled_poems(data_dir: Path, chars: int, count: int) -> list[tuple[str, str]]:
    """(title, verses) of the first ``count`` validation 绝句 with ``chars`` characters a verse."""
    found = []
    for title, lines in val_poems(data_dir):
        if regular_form(lines) == ("jueju", chars) and len(title) <= 12:
            found.append((title, "\n".join(lines)))
    return found[:count]


def measure(loaded: LoadedModel, chars: int, poems: list[tuple[str, str]], best_ofs: list[int], seeds: int,
            temperature: float) -> dict:
    """Per ``best_of``: the bpc of each returned poem, their mean, and the seconds a poem took."""
    result = {"chars_per_line": chars, "titles": [title for title, _ in poems], "by_best_of": {}}
    result["real_poems_bpc"] = statistics.fmean(bpc(loaded, f"{title}\n", verses) for title, verses in poems)
    for k in best_ofs:
        scores, seconds = [], 0.0
        for t, (title, _) in enumerate(poems):
            prepared = prepare_form({"kind": "jueju", "chars_per_line": chars, "title": title}, loaded)
            for s in range(seeds):
                # Seeds of their own per title: one seed's uniforms pick alike under every title
                # (the inverse-CDF draw over a vocabulary ordered by frequency), so shared seeds
                # would make the titles' results move together.
                seed = SEED_STRIDE * t + MAX_SAMPLES * s
                params = SamplingParams(n=1, best_of=k, seed=seed, temperature=temperature)
                began = time.perf_counter()
                (sample,) = generate(loaded, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())
                seconds += time.perf_counter() - began
                assert sample.finish_reason == "form_complete", sample
                scores.append(bpc(loaded, prepared.prompt, sample.text))
        result["by_best_of"][str(k)] = {"poems": len(scores), "mean_bpc": statistics.fmean(scores),
                                        "stdev_bpc": statistics.stdev(scores), "seconds_per_poem": seconds / len(scores),
                                        "bpc": scores}
        first = result["by_best_of"][str(best_ofs[0])]["bpc"]
        result["by_best_of"][str(k)]["lower_than_first_share"] = sum(a < b - 1e-9 for a, b in zip(scores, first)) / len(scores)
        print(f"jueju-{chars} best_of={k}: {len(scores)} poems, mean {statistics.fmean(scores):.3f} bpc, "
              f"{seconds / len(scores):.2f} s/poem", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/tang-gru")
    parser.add_argument("--titles", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--best-of", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--chars", type=int, nargs="+", default=[5, 7])
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TEXTGEN_DATA_DIR", "../shared/data")))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_export(args.checkpoint)
    forms = [measure(loaded, chars, titled_poems(args.data_dir, chars, args.titles), args.best_of, args.seeds,
                     args.temperature) for chars in args.chars]
    report = {"checkpoint": loaded.name, "temperature": args.temperature, "seeds": args.seeds,
              "threads": args.threads, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "command": "python " + " ".join(sys.argv), "forms": forms}
    text = json.dumps(report, ensure_ascii=False, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
