"""Tokenizing and training on corpora of 10 MB, 100 MB and 1 GB: throughput and peak memory.

    TEXTGEN_DATA_DIR=../shared/data python benchmarks/corpus_scale.py --sizes 10 100 1000 \
        --nice 19 --out docs/results/corpus-scale.json

For each size a corpus is built in ``--workdir`` (git-ignored ``.bench/``) by concatenating the
shared corpora (Shakespeare, Tang train, Stacks train, repeated) up to that many MB, one UTF-8
file whose documents are separated by blank lines.  Then, each in a fresh process:

* ``python -m textgen.data.tokens CORPUS``: the scan, the tokenizer trained on its bounded line
  sample, and the encoding into the memory-mapped token cache on one process per core;
  throughput = corpus bytes / the seconds it reports, and corpus bytes / the CPU seconds of the
  command and its workers (which a loaded machine does not change much);
* ``python -m textgen.train`` for 200 steps of a small model (``--model``) on that cache.

Peak memory is sampled every 0.5 s over the whole process tree (the command and its workers):
``pss`` is the sum of proportional set sizes (resident pages, a page shared by forked workers
counted once; file-backed pages of the memory map included), ``anon`` the anonymous part of it
(what the processes allocated themselves).  ``maxrss`` is the kernel's ``ru_maxrss``: the peak
resident set of the largest single process.  The corpora and caches are deleted afterwards
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("shakespeare/input.txt", "tang/train.txt", "stacks/train.txt")
MB = 1 << 20
# Small, so that 200 steps fit a busy machine; the memory of the data path is what is measured.
# An LSTM, as in the runs docs/BENCHMARKS.md reports (the default model was an LSTM then).
SMALL_MODEL = ["model=lstm", "model.embedding=16", "model.hidden=32", "model.layers=1", "model.encoder.hidden=16",
               "data.context_chars=32", "data.target_chars=64", "data.batch_size=16", "data.val_batch_size=16",
               "trainer.val_check_interval=1000", "trainer.limit_val_batches=10", "trainer.enable_progress_bar=false"]


def build_corpus(path: Path, megabytes: int, data_dir: Path) -> int:
    """Concatenate the shared corpora (repeated) into ``path`` up to ``megabytes`` MB; returns bytes."""
    texts = [(data_dir / name).read_bytes().rstrip(b"\n") + b"\n\n" for name in SOURCES]
    budget, written = megabytes * MB, 0
    with open(path, "wb") as out:
        while written < budget:
            for text in texts:
                piece = text[: budget - written]
                if len(piece) < len(text):  # end on a whole line, never inside a character
                    piece = piece[: piece.rfind(b"\n") + 1]
                out.write(piece)
                written += len(piece)
                if written >= budget or len(piece) < len(text):
                    return written
    return written


def _cpu_model() -> str:
    """``lscpu``'s model name ("" where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def _tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _memory(pids: list[int]) -> tuple[int, int]:
    """Summed (Pss, Pss_Anon) in bytes: forked workers' shared pages are counted once, not per process."""
    pss = anon = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss_Anon:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, anon


def measure(command: list[str], nice: int, env: dict[str, str]) -> dict:
    """Run ``command``; its wall time, output, and peak memory of its process tree."""
    wrapper = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'rc': r.returncode, 'maxrss': u.ru_maxrss * 1024, 'cpu': u.ru_utime + u.ru_stime}), file=sys.stderr)")
    started = time.perf_counter()
    process = subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", wrapper, sys.executable, *command], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"pss": 0, "anon": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pss, anon = _memory(_tree(process.pid))
            peak["pss"], peak["anon"] = max(peak["pss"], pss), max(peak["anon"], anon)
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    report = json.loads(stderr.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(report["cpu"], 2), "peak_pss_mb": round(peak["pss"] / MB, 1),
            "peak_anon_mb": round(peak["anon"] / MB, 1), "maxrss_mb": round(report["maxrss"] / MB, 1),
            "stdout": stdout, "stderr": stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="corpus sizes in MB")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TEXTGEN_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "corpus-scale")
    parser.add_argument("--steps", type=int, default=200, help="training steps on each cache (0: tokenize only)")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the corpora and caches")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free
    need = sum(args.sizes) * MB * 4  # the corpus, its ids (<= 2 bytes a byte), room to spare
    if free < need:
        raise SystemExit(f"{args.workdir}: {free / 2**30:.1f} GiB free, {need / 2**30:.1f} GiB needed")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    results = []
    for size in args.sizes:
        corpus = args.workdir / f"corpus-{size}MB.txt"
        cache = args.workdir / f"cache-{size}MB"
        nbytes = build_corpus(corpus, size, args.data_dir)
        print(f"[{size} MB] built {corpus} ({nbytes:,} bytes); load {os.getloadavg()[0]:.2f}", flush=True)
        try:
            tok = measure(["-m", "textgen.data.tokens", str(corpus), "--cache-dir", str(cache), "--quiet"], args.nice, env)
            report = json.loads(tok["stdout"])
            entry = {
                "megabytes": size, "bytes": nbytes,
                "chars": report["train"]["chars"] + report["val"]["chars"],
                "tokens": report["train"]["tokens"] + report["val"]["tokens"],
                "vocab_size": report["vocab_size"],
                "tokenize": {"seconds": report["seconds"], "mb_per_s": round(nbytes / MB / report["seconds"], 2),
                             **{k: v for k, v in tok.items() if k not in ("stdout", "stderr")}},
                "tokenize_mb_per_cpu_s": round(nbytes / MB / tok["cpu_s"], 2),
                "load_before": round(os.getloadavg()[0], 2),
            }
            print(f"[{size} MB] tokenize: {entry['tokenize']}", flush=True)
            if args.steps == 0:
                results.append(entry)
                continue
            train = measure(["-m", "textgen.train", "data=text", f"data.path={corpus}", f"data.cache_dir={cache}",
                             "data.memmap_min_mb=0", f"trainer.max_steps={args.steps}", "export.name=corpus-scale",
                             f"export.dir={args.workdir / 'checkpoints'}", f"hydra.run.dir={args.workdir / 'runs' / str(size)}",
                             *SMALL_MODEL], args.nice, env)
            if "token ids reused from" not in train["stdout"] + train["stderr"]:
                raise SystemExit("training did not reuse the token cache:\n" + train["stderr"][-3000:])
            entry["train"] = {k: v for k, v in train.items() if k not in ("stdout", "stderr")}
            entry["load_after"] = round(os.getloadavg()[0], 2)
            print(f"[{size} MB] train {args.steps} steps: {entry['train']}", flush=True)
            results.append(entry)
        finally:
            if not args.keep:
                corpus.unlink(missing_ok=True)
                shutil.rmtree(cache, ignore_errors=True)
    base = results[0]
    summary = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "cpu": _cpu_model()},
        "steps": args.steps, "model": SMALL_MODEL, "results": results,
        "ratios_to_smallest": {
            r["megabytes"]: {key: round(r[part][field] / base[part][field], 2)
                             for part in ("tokenize", "train") if part in r for field in ("peak_pss_mb", "maxrss_mb")
                             for key in [f"{part}_{field[:-3]}"]}
            for r in results},
    }
    print(json.dumps(summary["ratios_to_smallest"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
