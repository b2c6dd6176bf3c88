"""Train several configurations for the same wall-time budget and report val loss, bpc and samples.

    python benchmarks/train_budget.py --data shakespeare --minutes 30 \
        --runs lstm gru lstm-dec gru-dec --out docs/results/shakespeare-30min.json

Each run is ``python -m textgen.train`` with the default config; ``-dec`` means
``model.encoder.layers=0``.  The budget is turned into a step count *before* training: each
configuration's training speed is timed on the quiet machine (``--calibrate-steps`` optimizer
steps on real batches, after two warm-up steps), and ``trainer.max_steps`` = budget x steps/s.
The run then trains exactly the steps a quiet, time-limited run would have reached, so its result
does not depend on what else the machine does meanwhile (the runs themselves may be niced).
``--calibrate-only`` prints the rates and stops, to pass them later as ``--steps-per-second`` (so
runs started at different times share one quiet calibration).  ``--wall-clock`` instead uses
``trainer.max_time`` and needs the machine to itself.  Corpora come from ``TEXTGEN_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from plot_models import validation_curve  # benchmarks/ is on sys.path when run as a script

from textgen.export import load_export, read_metrics
from textgen.sampling import SamplingParams, generate

LOAD_EVERY_S = 30
SAMPLE_SEEDS = (1, 2, 3)


def model_overrides(spec: str, args: argparse.Namespace) -> list[str]:
    """``lstm``, ``gru-dec`` ...: a cell, ``-dec`` for no encoder; ``name:a=1,b=2`` adds overrides."""
    spec, _, extra = spec.partition(":")
    cell, _, variant = spec.partition("-")
    overrides = [f"data={args.data}", f"model={cell}", *args.override]
    if variant == "dec":
        overrides.append("model.encoder.layers=0")
    return overrides + [item for item in re.split(r",(?![^\[]*\])", extra) if item]  # not inside [...]


def calibrate(spec: str, args: argparse.Namespace) -> float:
    """Optimizer steps per second of this configuration on real batches (plain PyTorch)."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from textgen.data.corpus import CorpusConfig, load_corpus
    from textgen.data.windows import RandomWindows
    from textgen.models import ModelConfig, Seq2SeqLM
    from textgen.tokenizer import CharTokenizer
    from textgen.train import CONFIG_PATH

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("train", overrides=model_overrides(spec, args))
    corpus = load_corpus(CorpusConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True)))
    tokenizer = CharTokenizer.train_on_text(corpus.train)
    model = Seq2SeqLM(ModelConfig.from_dict({**OmegaConf.to_container(cfg.model), "vocab_size": tokenizer.vocab_size}))
    optimizer = instantiate(cfg.optim)(model.parameters())
    windows = RandomWindows(torch.tensor(tokenizer.encode(corpus.train[:2_000_000])),
                            cfg.data.context_chars, cfg.data.target_chars)
    batches = iter(DataLoader(windows, batch_size=cfg.data.batch_size, shuffle=True))
    for step in range(2 + args.calibrate_steps):
        if step == 2:
            started = time.perf_counter()
        context, lengths, inputs, targets = next(batches)
        _, loss = model(context, inputs, targets, context_lengths=lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return args.calibrate_steps / (time.perf_counter() - started)


def run_one(spec: str, args: argparse.Namespace, steps_per_second: float | None) -> dict:
    name = f"bench-{args.data}-{spec.partition(':')[0]}-{args.minutes}min"
    overrides = [
        *model_overrides(spec, args), f"trainer.val_check_interval={args.val_every}",
        "trainer.enable_progress_bar=false", f"export.dir={args.checkpoints}", f"export.name={name}",
        f"hydra.run.dir={args.runs_dir}/{name}",
    ]
    if steps_per_second is None:
        overrides += ["trainer.max_steps=-1", f"trainer.max_time=00:00:{args.minutes:02d}:00"]
    else:
        overrides.append(f"trainer.max_steps={int(args.minutes * 60 * steps_per_second)}")
    command = [sys.executable, "-m", "textgen.train", *overrides]
    loads: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(LOAD_EVERY_S):
            loads.append(os.getloadavg()[0])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.time()
    log_path = Path(args.runs_dir) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    with open(log_path, "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    stop.set()
    if code:
        raise SystemExit(f"{spec}: training failed with exit code {code}; see {log_path}")
    export = Path(args.checkpoints) / name
    metrics = read_metrics(export)
    curve = validation_curve(Path(args.runs_dir) / name)
    loaded = load_export(export)
    samples = [
        generate(loaded, "", SamplingParams(max_new_chars=args.sample_chars, temperature=0.8, seed=seed))[0].text
        for seed in SAMPLE_SEEDS
    ]
    return {
        "run": spec, "export": str(export), "quiet_steps_per_second": steps_per_second, "command": " ".join(["python -m textgen.train", *overrides]),
        "val_loss": metrics["val_loss"], "val_bpc": metrics["val_bpc"], "steps": metrics["steps"],
        "best_step": metrics["best_step"], "chars_seen": metrics["chars_seen"], "params": metrics["params"],
        "train_seconds": metrics["train_seconds"], "wall_seconds": round(time.time() - started, 1),
        "train_chars_per_second": metrics["train_chars_per_second"],
        "val_curve": curve,
        "load_avg_max": max(loads, default=None), "load_avg_mean": sum(loads) / len(loads) if loads else None,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shakespeare")
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--runs", nargs="+", default=["lstm", "gru", "lstm-dec", "gru-dec"])
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--checkpoints", default=".bench/checkpoints")
    parser.add_argument("--runs-dir", default=".bench/runs")
    parser.add_argument("--out", help="results JSON (required unless --calibrate-only)")
    parser.add_argument("--calibrate-steps", type=int, default=6)
    parser.add_argument("--wall-clock", action="store_true", help="use trainer.max_time (needs a quiet machine)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the training runs after calibration")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the training runs (the result does not "
                        "depend on it, only the wall time: use 1 to run two benchmarks side by side)")
    parser.add_argument("--steps-per-second", nargs="*", default=[], metavar="RUN=RATE",
                        help="quiet-machine steps/s measured earlier, instead of calibrating now")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="print each run's quiet-machine steps/s as RUN=RATE (for --steps-per-second) and stop")
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if not args.out and not args.calibrate_only:
        parser.error("--out is required unless --calibrate-only")
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "command": " ".join(sys.argv), "runs": []}
    speeds = {name: float(rate) for name, _, rate in (item.partition("=") for item in args.steps_per_second)}
    if not args.wall_clock:
        for spec in (s for s in args.runs if s.partition(":")[0] not in speeds):  # calibrate while quiet
            name = spec.partition(":")[0]
            speeds[name] = calibrate(spec, args)
            print(f"{name}: {speeds[name]:.3f} steps/s on the quiet machine", flush=True)
    if args.calibrate_only:
        print("--steps-per-second " + " ".join(f"{name}={rate:.4f}" for name, rate in speeds.items()))
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.nice:
        os.nice(args.nice)
    for spec in args.runs:
        results["runs"].append(run_one(spec, args, speeds.get(spec.partition(":")[0])))
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")  # keep partial results
        last = results["runs"][-1]
        print(f"{spec}: val loss {last['val_loss']:.4f} nats, {last['val_bpc']:.4f} bpc, "
              f"{last['steps']} steps, load avg {last['load_avg_mean']}", flush=True)


if __name__ == "__main__":
    main()
