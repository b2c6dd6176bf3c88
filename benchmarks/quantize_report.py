"""The decoding step's candidates (float32 modules, the fused float32 step, int8 weights): speed, the
memory-bandwidth limit of a step, and bpc.

    python benchmarks/quantize_report.py speed --out docs/results/quantize-speed.json
    python benchmarks/quantize_report.py speed --threads 2 --out docs/results/quantize-speed-2threads.json
    TEXTGEN_DATA_DIR=../shared/data python benchmarks/quantize_report.py bpc --out docs/results/quantize-bpc.json

``speed`` (``--threads`` torch threads, default one; the server's oneDNN setting; the machine's CPU model,
kernel flags and library versions recorded beside the figures): this machine's memory bandwidth (a
``--bandwidth-mb`` float32 array summed by torch, which reads it, and copied by numpy, which reads
and writes it, best of ``--repeats``); for each model the bytes of weights a batch-1 step reads (decoder, attention output,
output layer, one embedding row) and of per-row state (the context memory and attention keys), and
``DecodeBatch.step`` at batch 1, 8 and 32 for each candidate of ``auto`` (:data:`MODES`), measured alternately
``--repeats`` times (the median is reported).  The limit of a batch-1 step is its bytes over the
read bandwidth: chars/s at batch 1 is reported as a share of it.  The step's weights (3-16 MB) may
stay in the caches between steps, so the read bandwidth of arrays of 3.5 and 14 MB (read again
and again) gives a second, tighter limit.

``bpc``: ``python -m textgen.evaluate`` (the real command) on each validation file with
``quantize=none`` and ``quantize=int8``: Tang and Stacks ``val.txt``, Shakespeare the last 10%
of ``input.txt`` (the split training uses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from batcher_profile import static_step_seconds  # noqa: E402  (benchmarks/ is on sys.path)

from textgen.export import load_export  # noqa: E402
from textgen.machine import cpu_capability  # noqa: E402
from textgen.quantization import QUANTIZE_MODES, weight_bytes  # noqa: E402

SPEED_MODELS = {"shakespeare-gru": "ROMEO:\n", "tang-gru": "春眠不觉晓，"}
BPC_MODELS = {"shakespeare-gru": "shakespeare", "tang-gru": "tang", "stacks-gru": "stacks"}
BATCHES = (1, 8, 32)
#: The decoding candidates of ``auto`` (textgen/runtime_choice.py): float32 through the model's modules,
#: float32 through the fused step, int8 weights.
MODES = {"none+torch": ("none", "torch"), "none+fused": ("none", "fused"), "int8": ("int8", "torch")}
BASELINE = "none+torch"


def machine() -> dict:
    """CPU model, cores, load, versions."""
    model = ""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "numpy": np.__version__, "load": os.getloadavg(), "capability": cpu_capability()}


def bandwidth(megabytes: float, repeats: int) -> dict:
    """GB/s of one thread reading (sum) and copying (read + write) an array of ``megabytes``; a small
    array is read ``passes`` times in a row, so that it is timed where it stays (the caches)."""
    a = np.ones(int(megabytes * (1 << 20)) // 4, dtype=np.float32)
    b = np.empty_like(a)
    t = torch.from_numpy(a)  # torch's vectorised sum, one thread: reads faster than numpy's
    passes = max(1, int(512 // megabytes))
    reads, copies = [], []
    for _ in range(repeats):
        t.sum()  # in cache, if it fits
        started = time.perf_counter()
        for _ in range(passes):
            t.sum()
        reads.append(passes * a.nbytes / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        for _ in range(passes):
            np.copyto(b, a)
        copies.append(2 * passes * a.nbytes / (time.perf_counter() - started) / 1e9)
    return {"array_mb": megabytes, "read_gb_s": round(max(reads), 2), "read_gb_s_median": round(statistics.median(reads), 2),
            "copy_gb_s": round(max(copies), 2), "copy_gb_s_median": round(statistics.median(copies), 2)}


def step_bytes(loaded) -> dict:
    """Bytes a batch-1 decoding step reads: its weights, and one row's state."""
    model, cfg = loaded.model, loaded.info.model
    parts = [model.decoder] + [getattr(model, name) for name in ("attention_out", "head", "adaptive_head", "head_projection")
                               if getattr(model, name, None) is not None]
    weights = sum(weight_bytes(part) for part in parts)
    weights += cfg.embedding * 4  # one embedding row
    if cfg.tie_weights:
        weights += weight_bytes(model.embedding)
    context = loaded.info.context_chars
    state = 4 * cfg.layers * cfg.hidden * (2 if cfg.cell == "lstm" else 1)
    if cfg.has_encoder:
        state += 4 * context * (2 * cfg.encoder.hidden + cfg.hidden) + context  # memory, keys, mask
    return {"weights": weights, "state_per_row": state}


def speed(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    result: dict = {"machine": machine(), "bandwidth": bandwidth(args.bandwidth_mb, args.repeats),
                    "bandwidth_by_size": [bandwidth(mb, args.repeats) for mb in (3.5, 14)], "models": {}}
    read = result["bandwidth"]["read_gb_s"] * 1e9
    cached = {row["array_mb"]: row["read_gb_s"] * 1e9 for row in result["bandwidth_by_size"]}
    for name, prompt in SPEED_MODELS.items():
        loaded = {mode: load_export(REPO / "checkpoints" / name, quantize=q, decode_step=s, encoder_runtime="torch")
                  for mode, (q, s) in MODES.items()}
        entry: dict = {"vocab_size": loaded[BASELINE].tokenizer.vocab_size, "modes": {}}
        times = {(mode, rows): [] for mode in MODES for rows in BATCHES}
        for _ in range(args.repeats):  # alternate, so that a neighbour's load hits both alike
            for rows in BATCHES:
                for mode in MODES:
                    times[mode, rows].append(static_step_seconds(loaded[mode], rows, args.steps, [prompt]))
        for mode in MODES:
            size = step_bytes(loaded[mode])
            limit = read / (size["weights"] + size["state_per_row"])
            # The weights may stay in the caches between steps: the limit at the bandwidth of the
            # array size nearest to them.
            near = min(cached, key=lambda mb: abs(mb * (1 << 20) - size["weights"]))
            cache_limit = cached[near] / (size["weights"] + size["state_per_row"])
            per_batch = {}
            for rows in BATCHES:
                seconds = statistics.median(times[mode, rows])
                per_batch[rows] = {"ms_per_step": round(1000 * seconds, 3), "chars_per_s": round(rows / seconds),
                                   "best_ms_per_step": round(1000 * min(times[mode, rows]), 3),
                                   "runs_ms": [round(1000 * t, 3) for t in times[mode, rows]]}
            entry["modes"][mode] = {"step_bytes": size, "batch1_limit_chars_per_s": round(limit),
                                    "batch1_share_of_limit": round(per_batch[1]["chars_per_s"] / limit, 3),
                                    "cache_array_mb": near, "batch1_cache_limit_chars_per_s": round(cache_limit),
                                    "batch1_share_of_cache_limit": round(per_batch[1]["chars_per_s"] / cache_limit, 3),
                                    "batches": per_batch}
        entry["speedup"] = {mode: {rows: round(entry["modes"][mode]["batches"][rows]["chars_per_s"]
                                               / entry["modes"][BASELINE]["batches"][rows]["chars_per_s"], 2)
                                   for rows in BATCHES} for mode in MODES if mode != BASELINE}
        result["models"][name] = entry
        for mode in MODES:
            steps = ", ".join(f"{rows} rows {entry['modes'][mode]['batches'][rows]['ms_per_step']} ms" for rows in BATCHES)
            print(f"{name} {mode}: {steps} (batch 1: {entry['modes'][mode]['batch1_share_of_limit']:.0%} of the "
                  f"DRAM limit)", flush=True)
    result["load_after"] = os.getloadavg()
    return result


def bpc(args: argparse.Namespace) -> dict:
    data = Path(os.environ.get("TEXTGEN_DATA_DIR", REPO.parent / "shared" / "data"))
    result: dict = {"machine": machine(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        shakespeare = (data / "shakespeare" / "input.txt").read_text(encoding="utf-8")
        val = Path(tmp) / "shakespeare_val.txt"
        val.write_text(shakespeare[int(len(shakespeare) * 0.9):], encoding="utf-8")
        files = {"shakespeare": val, "tang": data / "tang" / "val.txt", "stacks": data / "stacks" / "val.txt"}
        for name, corpus in BPC_MODELS.items():
            entry = {"file": str(files[corpus]) if corpus != "shakespeare" else "shakespeare/input.txt, last 10%"}
            for mode in QUANTIZE_MODES:
                command = [sys.executable, "-m", "textgen.evaluate", f"checkpoint={REPO / 'checkpoints' / name}",
                           f"file={files[corpus]}", "json=true", f"quantize={mode}"]
                out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                scored = json.loads(out.stdout)
                entry[mode] = {k: scored[k] for k in ("bpc", "chars", "seconds", "chars_per_second")}
                entry[mode]["load"] = os.getloadavg()[0]
            entry["int8_cost"] = round(entry["int8"]["bpc"] / entry["none"]["bpc"] - 1, 5)
            result["models"][name] = entry
            print(name, json.dumps(entry), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["speed", "bpc"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="timed steps a measurement")
    parser.add_argument("--bandwidth-mb", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the speed timings")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = speed(args) if args.what == "speed" else bpc(args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
