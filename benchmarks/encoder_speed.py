"""How long reading contexts takes, torch's encoder against onnxruntime's (``encoder_runtime``).

    python benchmarks/encoder_speed.py --out docs/results/encoder-speed.json

For each shipped model, ``model.start`` (the encoder, the bridge to the decoder's state and the
attention keys: what a row pays when it joins a batch or re-reads its context) on ``rows``
contexts of the model's ``context_chars`` tokens, and on contexts of mixed lengths (every other row
shorter, so torch packs them), one torch thread, int8 decoder weights as a CPU server loads them.
Each figure is the median of 5 runs of 10 calls, the two runtimes alternating.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from textgen.export import load_export  # noqa: E402
from textgen.machine import cpu_capability  # noqa: E402

MODELS = ["shakespeare-gru", "tang-gru", "stacks-lstm"]
ROWS = [1, 2, 4, 8, 16, 32]
RUNTIMES = ["torch", "onnxruntime"]


def contexts(rows: int, chars: int, vocab: int, mixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` random contexts of ``chars`` tokens (every other one 3/5 as long when ``mixed``)."""
    generator = torch.Generator().manual_seed(rows)
    ids = torch.randint(4, vocab, (rows, chars), generator=generator)
    lengths = torch.tensor([chars * 3 // 5 if mixed and i % 2 else chars for i in range(rows)])
    return ids, lengths


def milliseconds(model, ids: torch.Tensor, lengths: torch.Tensor, calls: int = 10) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(calls):
            model.start(ids, lengths)
    return 1000 * (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--rows", nargs="+", type=int, default=ROWS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "torch": torch.__version__, "capability": cpu_capability()}, "rows": []}
    print("| model | rows | contexts | torch ms | onnxruntime ms | speed-up |\n| --- | ---: | --- | ---: | ---: | ---: |")
    for name in args.models:
        loaded = {rt: load_export(REPO / "checkpoints" / name, quantize="none", encoder_runtime=rt) for rt in RUNTIMES}
        chars, vocab = loaded["torch"].info.context_chars, loaded["torch"].tokenizer.vocab_size
        for rows in args.rows:
            for mixed in (False, True):
                ids, lengths = contexts(rows, chars, vocab, mixed)
                times: dict[str, list[float]] = {rt: [] for rt in RUNTIMES}
                for rt in RUNTIMES:
                    milliseconds(loaded[rt].model, ids, lengths, calls=2)  # warm up
                for _ in range(args.repeats):
                    for rt in RUNTIMES:
                        times[rt].append(milliseconds(loaded[rt].model, ids, lengths))
                ms = {rt: statistics.median(times[rt]) for rt in RUNTIMES}
                what = "mixed lengths" if mixed else f"{chars} tokens"
                row = {"model": name, "rows": rows, "contexts": what, **{f"{rt}_ms": round(ms[rt], 2) for rt in RUNTIMES},
                       "speedup": round(ms["torch"] / ms["onnxruntime"], 2)}
                results["rows"].append(row)
                print(f"| `{name}` | {rows} | {what} | {ms['torch']:.2f} | {ms['onnxruntime']:.2f} | "
                      f"{row['speedup']:.2f}x |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
