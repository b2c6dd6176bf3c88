"""Where a batcher's time goes: the server's Batcher in one process, no HTTP, closed-loop clients.

    python benchmarks/batcher_profile.py checkpoints/shakespeare-gru --clients 16

``clients`` threads each submit ``--requests`` jobs of ``--chars`` characters one after another
to one :class:`server.batching.Batcher` (the object a server worker runs per model), as the load
test's HTTP clients do.  It prints the requests/s against what a static batch of ``clients`` rows
would allow (``clients`` / (chars x static step time)), and the share of the wall time spent in
each part of the worker: the encoder (``_start``: new rows, and rows that re-read their context
every ``target_chars`` steps), joining (``add``), leaving (``remove``), the model's step, and
choosing the tokens.  One torch thread and the batching settings of ``conf/server.yaml``, as a
server worker (the queue is made long enough that no client is turned away).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.batching import Batcher  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.settings import load_settings  # noqa: E402
from textgen.export import load_export  # noqa: E402
from textgen.sampling import DecodeBatch, SamplingParams  # noqa: E402

PROMPTS = ["ROMEO:\n", "KING HENRY:\n", "First Citizen:\n", "JULIET:\n", "MENENIUS:\n", "DUKE:\n"]


def static_step_seconds(loaded, rows: int, steps: int = 100, prompts: list[str] = PROMPTS) -> float:
    """Seconds a step of a fixed batch of ``rows`` takes (after 5 warm-up steps); row ``i`` reads
    ``prompts[i % len(prompts)]``."""
    batch = DecodeBatch(loaded)
    batch.add([batch.make_row(prompts[i % len(prompts)], SamplingParams(max_new_chars=10**6, seed=i))
               for i in range(rows)])
    for _ in range(5):
        batch.step()
    started = time.perf_counter()
    for _ in range(steps):
        batch.step()
    return (time.perf_counter() - started) / steps


def server_batcher(loaded, clients: int, name: str = "profile") -> Batcher:
    """The Batcher a server worker builds for ``loaded`` (``conf/server.yaml`` and its TEXTGEN_*
    overrides), its queue long enough that none of ``clients`` closed-loop clients is turned away."""
    settings = load_settings()
    b = settings.batching
    return Batcher(name, loaded, b.model_copy(update={"queue_length": max(b.queue_length, clients)}),
                   metrics=Metrics(), onednn=settings.onednn)


@dataclass
class ClosedLoop:
    """What :func:`closed_loop` measured."""

    seconds: float
    requests_per_s: float
    chars_per_s: float
    p50_s: float  # median latency


def closed_loop(batcher: Batcher, clients: int, requests: int,
                request: Callable[[int, int], tuple[str, SamplingParams]]) -> ClosedLoop:
    """``clients`` threads each sending ``requests`` jobs, one after another; job ``i`` of client
    ``k`` is ``request(k, i)``: (prompt, sampling parameters)."""
    latencies: list[float] = []
    chars: list[int] = []

    def client(k: int) -> None:
        for i in range(requests):
            prompt, params = request(k, i)
            started = time.perf_counter()
            job = batcher.submit([batcher.prepare(prompt, params)])
            job.done.wait()
            latencies.append(time.perf_counter() - started)
            chars.append(sum(sample.generated_chars for sample in job.samples.values()))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return ClosedLoop(seconds, len(latencies) / seconds, sum(chars) / seconds, statistics.median(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="per client")
    parser.add_argument("--chars", type=int, default=200)
    parser.add_argument("--quantize", default="none", choices=["none", "int8", "auto"])
    parser.add_argument("--encoder-runtime", default="auto", choices=["torch", "onnxruntime", "auto"])
    args = parser.parse_args()
    torch.set_num_threads(1)

    loaded = load_export(args.checkpoint, quantize=args.quantize, encoder_runtime=args.encoder_runtime)
    step = static_step_seconds(loaded, args.clients)
    ideal = args.clients / (args.chars * step)
    print(f"static batch of {args.clients}: {1000 * step:.2f} ms a step -> at most {ideal:.2f} requests/s")

    batcher = server_batcher(loaded, args.clients)

    def request(k: int, i: int) -> tuple[str, SamplingParams]:
        return PROMPTS[(k + i) % len(PROMPTS)], SamplingParams(max_new_chars=args.chars, temperature=0.8,
                                                               seed=1000 * k + i)

    closed_loop(batcher, args.clients, 1, request)  # warm up
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(owner: object, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                seconds[label] += time.perf_counter() - started
                calls[label] += 1

        setattr(owner, attribute, wrapper)

    batch = batcher.batch
    for owner, attribute, label in ((batch, "_start", "encoder (_start)"), (batch, "add", "add (incl. encoder)"),
                                    (batch, "remove", "remove"), (batch, "step", "step (all)"),
                                    (loaded.model, "step", "model.step"), (batch, "_choose", "_choose")):
        timed(owner, attribute, label)
    started = time.perf_counter()
    run = closed_loop(batcher, args.clients, args.requests, request)
    rate, p50 = run.requests_per_s, run.p50_s
    wall = time.perf_counter() - started
    batcher.close()
    print(f"batcher, {args.clients} closed-loop clients: {rate:.2f} requests/s ({rate / ideal:.0%} of the static "
          f"batch), p50 {p50:.3f} s")
    print("| part | calls | ms a call | share of wall time |\n| --- | ---: | ---: | ---: |")
    for label, total in seconds.items():
        print(f"| {label} | {calls[label]} | {1000 * total / calls[label]:.2f} | {total / wall:.0%} |")


if __name__ == "__main__":
    main()
