"""Serving benchmark: requests/s and latency for 1, 8 and 32 concurrent clients, batching on and off.

    python benchmarks/load_test.py                      # both vocabularies, everything (~5-10 min on 2 cores)
    python benchmarks/load_test.py --vocab shakespeare --clients 1 8 --requests-per-client 3

For each vocabulary (Shakespeare: ~100 symbols; Tang: ~6,400) it builds a randomly initialised
export of the default architecture (2x512 LSTM decoder + bi-LSTM encoder, what throughput depends
on; the weights do not matter) with a tokenizer trained on the shared corpus (TEXTGEN_DATA_DIR,
default ../shared/data), starts the production server (gunicorn, ``server/gunicorn_conf.py``) on
a loopback port, once with batching (max_batch_size 32) and once without (1), and runs closed-loop
clients: each sends ``/v1/generate`` for 200 characters, waits for the answer, sends the next.
``--shipped`` serves the trained exports of ``checkpoints/`` instead (``shakespeare-gru``, ``tang-lstm``):
the weights then matter a little, since a random model often samples multi-byte pieces.
``--workers 2`` runs two gunicorn workers, each with its own batcher and one torch thread.
Bounded: a fixed number of requests per client and a time limit per level; loopback only.

``--engine`` also measures the decoding engine alone (DecodeBatch, no HTTP): characters/s at
batch 1 and 32 and where a step's time goes.

``--quantize none int8`` serves each model once per weight mode (``TEXTGEN_QUANTIZE``), in that
order for every vocabulary.  ``--same-rows`` measures, right after each level of more than one
client, the engine alone on exactly the requests that level sent (same prompts, seeds and length,
``clients`` rows stepped together from their start to their end, round after round, one torch
thread, the server's weights): the level's characters/s as a share of it is what HTTP, JSON,
threads and the batcher cost.  Right after that it measures the server's own batcher
(:class:`server.batching.Batcher`, the settings of ``conf/server.yaml``) in this process, fed the
same requests by as many closed-loop threads, with no HTTP: the share of that is what HTTP, JSON
and the request threads cost, apart from what dynamic batching costs (rows that join and re-read
their contexts at different steps, so the encoder runs on fewer rows at a time than in lockstep).
``--rounds 8`` measures such a level as 8 rounds of ``--requests-per-client`` requests a client,
each round the server and both yardsticks on the same requests in a rotating order, and pools them:
the host's speed drifts by ±15% over seconds, which decides a comparison of one long run each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
import torch
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.batcher_profile import closed_loop, server_batcher  # noqa: E402
from textgen.export import LoadedModel, export_model, load_export  # noqa: E402
from textgen.machine import cpu_capability  # noqa: E402
from textgen.models import ModelConfig, Seq2SeqLM  # noqa: E402
from textgen.sampling import DecodeBatch, SamplingParams  # noqa: E402
from textgen.tokenizer import CharTokenizer  # noqa: E402

DATA_DIR = Path(os.environ.get("TEXTGEN_DATA_DIR", REPO.parent / "shared" / "data"))
CORPORA = {"shakespeare": "shakespeare/input.txt", "tang": "tang/train.txt"}
SHIPPED = {"shakespeare": "shakespeare-gru", "tang": "tang-lstm"}  # --shipped: the trained exports in checkpoints/
CHARS = 200


def build_export(root: Path, corpus: str) -> Path:
    """A random-initialised default-architecture export with a tokenizer of ``corpus``."""
    text = (DATA_DIR / CORPORA[corpus]).read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train_on_text(text)
    torch.manual_seed(0)
    model = Seq2SeqLM(ModelConfig(vocab_size=tokenizer.vocab_size)).eval()
    return export_model(root / f"bench-{corpus}", model, tokenizer, name=f"bench-{corpus}", corpus=corpus,
                        context_chars=256, target_chars=256)


def prompts(corpus: str) -> list[str]:
    text = (DATA_DIR / CORPORA[corpus]).read_text(encoding="utf-8")[:20000]
    return [text[i * 97: i * 97 + 40] for i in range(64)]


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn with the production config, on a loopback port."""

    def __init__(self, checkpoints: Path, batch_size: int, log: Path, torch_threads: int, workers: int = 1,
                 quantize: str = "none", encoder_runtime: str = "auto") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TEXTGEN_CHECKPOINTS": str(checkpoints), "TEXTGEN_MAX_BATCH_SIZE": str(batch_size),
               "TEXTGEN_QUEUE_LENGTH": "256", "TEXTGEN_TORCH_THREADS": str(torch_threads), "TEXTGEN_BIND": f"127.0.0.1:{self.port}", "TEXTGEN_ACCESS_LOG": "",
               "TEXTGEN_WORKERS": str(workers), "TEXTGEN_QUANTIZE": quantize,
               "TEXTGEN_ENCODER_RUNTIME": encoder_runtime,
               "PYTHONUNBUFFERED": "1"}
        self.log = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn_conf.py", "server:create_app()"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the models
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.2)

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.log.close()


def served_runtime(url: str, model: str) -> dict | None:
    """How the server decodes ``model`` (``/v1/models``' ``runtime``: its settings and what ``auto`` timed)."""
    cards = requests.get(url + "/v1/models", timeout=30).json()["models"]
    return next((card.get("runtime") for card in cards if card["name"] == model), None)


# --------------------------------------------------------------------------- clients
def request_body(model: str, texts: list[str], k: int, i: int, per_client: int) -> dict:
    """Request ``i`` of client ``k``."""
    return {"model": model, "prompt": texts[(k * per_client + i) % len(texts)],
            "max_new_chars": CHARS, "temperature": 0.8, "seed": k * 1000 + i}


def client_load(url: str, model: str, texts: list[str], clients: int, per_client: int, limit_s: float,
                first: int = 0, of: int | None = None) -> tuple[float, int, list[float]]:
    """``clients`` closed-loop clients, each sending its requests ``first`` .. ``first + per_client - 1``
    (of ``of``, default ``per_client``; or until ``limit_s``): (seconds, characters, latencies)."""
    latencies: list[float] = []
    chars = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + limit_s

    def client(k: int) -> None:
        with requests.Session() as session:
            for i in range(first, first + per_client):
                if time.perf_counter() > stop_at:
                    return
                body = request_body(model, texts, k, i, of or per_client)
                started = time.perf_counter()
                response = session.post(url + "/v1/generate", json=body, timeout=600)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    chars[0] += response.json()["usage"]["generated_chars"]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client, k) for k in range(clients)]:
            future.result()
    return time.perf_counter() - started, chars[0], latencies


def summary(clients: int, seconds: float, chars: int, latencies: list[float]) -> dict:
    """A level's figures from what its clients measured."""
    latencies = sorted(latencies)
    return {
        "clients": clients, "requests": len(latencies), "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 2), "chars_per_s": round(chars / seconds),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
    }


def run_level(url: str, model: str, texts: list[str], clients: int, per_client: int, limit_s: float) -> dict:
    """``clients`` closed-loop clients, ``per_client`` requests each (or until ``limit_s``)."""
    return summary(clients, *client_load(url, model, texts, clients, per_client, limit_s))


# --------------------------------------------------------------------------- engine only
def engine(path: Path, texts: list[str], steps: int = 200) -> dict:
    """Characters/s of DecodeBatch alone at batch 1 and 32, and the share of a step in the model."""
    loaded = load_export(path)
    out = {}
    for size, onednn in ((1, True), (1, False), (32, True), (32, False)):
        torch.backends.mkldnn.enabled = onednn  # the server decodes with oneDNN off (conf/server.yaml)
        batch = DecodeBatch(loaded)
        params = SamplingParams(max_new_chars=10**6, temperature=0.8)
        batch.add([batch.make_row(texts[i % len(texts)], params) for i in range(size)])
        for _ in range(10):
            batch.step()
        model_time = [0.0]
        original = loaded.model.step

        def timed(*args, **kwargs):
            t = time.perf_counter()
            result = original(*args, **kwargs)
            model_time[0] += time.perf_counter() - t
            return result

        loaded.model.step = timed
        started = time.perf_counter()
        for _ in range(steps):
            batch.step()
        seconds = time.perf_counter() - started
        del loaded.model.step
        out[f"batch{size}" + ("-onednn" if onednn else "")] = {
            "chars_per_s": round(size * steps / seconds), "ms_per_step": round(1000 * seconds / steps, 2),
            "model_share": round(model_time[0] / seconds, 2)}
    torch.backends.mkldnn.enabled = True
    return out


@dataclass
class Reads:
    """Context reads (encoder calls): how many, of how many rows, how long."""

    calls: int = 0
    rows: int = 0
    seconds: float = 0.0

    def add(self, rows: int, seconds: float, calls: int = 1) -> None:
        self.calls += calls
        self.rows += rows
        self.seconds += seconds

    def to_dict(self) -> dict:
        return {"calls": self.calls, "rows": self.rows, "seconds": round(self.seconds, 2)}


def server_reads(url: str, model: str) -> Reads:
    """The server's context reads of ``model`` so far, from its ``/metrics``."""
    values = {sample.name: sample.value
              for family in text_string_to_metric_families(requests.get(url + "/metrics", timeout=30).text)
              for sample in family.samples if sample.labels.get("model") == model}
    return Reads(int(values.get("textgen_encoder_rows_count", 0)), int(values.get("textgen_encoder_rows_sum", 0)),
                 values.get("textgen_encoder_seconds_total", 0.0))


def same_rows(loaded: LoadedModel, model: str, texts: list[str], clients: int, per_client: int,
              first: int = 0, of: int | None = None, reads: Reads | None = None) -> tuple[float, int]:
    """The engine alone on the requests of a level (as :func:`client_load` numbers them): round i
    steps request i of every client together. (seconds, characters); its context reads are added to ``reads``."""
    batch = DecodeBatch(loaded, on_read=None if reads is None else reads.add)
    chars, started = 0, time.perf_counter()
    for i in range(first, first + per_client):
        rows = []
        for k in range(clients):
            body = request_body(model, texts, k, i, of or per_client)
            params = SamplingParams(max_new_chars=body["max_new_chars"], temperature=body["temperature"],
                                    seed=body["seed"])
            rows.append(batch.make_row(body["prompt"], params))
        batch.add(rows)
        while len(batch):
            batch.step()
        chars += sum(row.chars for row in rows)
    return time.perf_counter() - started, chars


def same_jobs(loaded: LoadedModel, model: str, texts: list[str], clients: int, per_client: int,
              first: int = 0, of: int | None = None, reads: Reads | None = None) -> tuple[float, int]:
    """The server's batcher alone on the requests of a level: ``clients`` closed-loop threads submit
    them as jobs, as the HTTP clients send them, with the server's batching settings. (seconds,
    characters); its context reads are added to ``reads``."""
    batcher = server_batcher(loaded, clients, model)

    def request(k: int, i: int) -> tuple[str, SamplingParams]:
        body = request_body(model, texts, k, first + i, of or per_client)
        return body["prompt"], SamplingParams(max_new_chars=body["max_new_chars"], temperature=body["temperature"],
                                              seed=body["seed"])

    try:
        run = closed_loop(batcher, clients, per_client, request)
    finally:
        batcher.close()
    if reads is not None:
        sample = batcher.metrics.registry.get_sample_value
        reads.add(int(sample("textgen_encoder_rows_sum", {"model": model}) or 0),
                  sample("textgen_encoder_seconds_total", {"model": model}) or 0.0,
                  calls=int(sample("textgen_encoder_rows_count", {"model": model}) or 0))
    return run.seconds, round(run.chars_per_s * run.seconds)


YARDSTICKS = ("server", "engine", "batcher")


def yardstick_level(url: str, path: Path, quantize: str, encoder_runtime: str, texts: list[str], clients: int,
                    per_client: int, rounds: int, limit_s: float) -> dict:
    """A level of ``clients`` measured beside its two yardsticks, in ``rounds`` rounds of ``per_client``
    requests a client.  Each round runs the server, the lockstep engine (:func:`same_rows`) and the
    batcher without HTTP (:func:`same_jobs`) on the same requests, one after another in an order
    that rotates from round to round, so that the host's drift over seconds (±15% here) falls on all
    three alike; the level's figures pool the rounds (characters over seconds)."""
    loaded = load_export(path, quantize=quantize, encoder_runtime=encoder_runtime)
    of = per_client * rounds
    totals = {name: [0.0, 0] for name in YARDSTICKS}  # seconds, characters
    reads = {name: Reads() for name in YARDSTICKS}
    latencies: list[float] = []
    per_round = []
    for r in range(rounds):
        first = r * per_client
        order = YARDSTICKS[r % 3:] + YARDSTICKS[:r % 3]
        rates = {}
        for name in order:
            if name == "server":
                before = server_reads(url, path.name)
                seconds, chars, got = client_load(url, path.name, texts, clients, per_client, limit_s, first, of)
                after = server_reads(url, path.name)
                reads["server"].add(after.rows - before.rows, after.seconds - before.seconds, after.calls - before.calls)
                latencies += got
            else:
                measure = same_rows if name == "engine" else same_jobs
                seconds, chars = measure(loaded, path.name, texts, clients, per_client, first, of, reads[name])
            totals[name][0] += seconds
            totals[name][1] += chars
            rates[name] = chars / seconds
        per_round.append({"order": list(order), **{f"{name}_chars_per_s": round(rates[name]) for name in YARDSTICKS},
                          "engine_share": round(rates["server"] / rates["engine"], 3),
                          "batcher_share": round(rates["server"] / rates["batcher"], 3)})
    level = summary(clients, *totals["server"], latencies)
    for name in ("engine", "batcher"):
        seconds, chars = totals[name]
        level[name] = {"requests": clients * of, "seconds": round(seconds, 2),
                       "requests_per_s": round(clients * of / seconds, 2), "chars_per_s": round(chars / seconds)}
        level[f"{name}_share"] = round(level["chars_per_s"] / level[name]["chars_per_s"], 3)
    level["context_reads"] = {name: reads[name].to_dict() for name in YARDSTICKS}
    if rounds > 1:
        level["rounds"] = per_round
    return level


def share_text(level: dict, key: str) -> str:
    """A level's pooled share, with the median and range of its rounds when it had several."""
    if key not in level:
        return ""
    text = f"{level[key]:.1%}"
    if "rounds" in level:
        shares = [r[key] for r in level["rounds"]]
        text += f" (rounds: median {statistics.median(shares):.1%}, {min(shares):.1%}-{max(shares):.1%})"
    return text


def table(rows: list[dict]) -> str:
    lines = ["| vocabulary | weights | batching | clients | requests | req/s | chars/s | p50 s | p99 s | of engine "
             "| of batcher |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        shares = [share_text(r, key) for key in ("engine_share", "batcher_share")]
        lines.append(f"| {r['vocab']} ({r['vocab_size']}) | {r['quantize']} | {r['batching']} | {r['clients']} | "
                     f"{r['requests']} | {r['requests_per_s']} | {r['chars_per_s']:,} | {r['p50_s']} | {r['p99_s']} | "
                     f"{shares[0]} | {shares[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", nargs="+", default=["shakespeare", "tang"], choices=sorted(CORPORA))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=4, help="(1 client: 4x as many)")
    parser.add_argument("--limit-s", type=float, default=120, help="time limit per level")
    parser.add_argument("--batching", nargs="*", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--engine", action="store_true", help="also time DecodeBatch alone")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers, each with its own batcher")
    parser.add_argument("--shipped", action="store_true",
                        help="serve the trained exports in checkpoints/ instead of random-initialised ones")
    parser.add_argument("--quantize", nargs="+", default=["none"], choices=["none", "int8", "auto"],
                        help="weights of the server (TEXTGEN_QUANTIZE), each in turn")
    parser.add_argument("--same-rows", action="store_true",
                        help="after each level of >1 client, the engine alone, then the server's batcher "
                             "without HTTP, on the same requests")
    parser.add_argument("--encoder-runtime", default="auto", choices=["torch", "onnxruntime", "auto"],
                        help="what runs the context encoder, in the server (TEXTGEN_ENCODER_RUNTIME) and the yardsticks")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--same-rows: measure each level in this many rounds of --requests-per-client "
                             "requests a client, the server and both yardsticks in each round (pooled)")
    parser.add_argument("--tang-export", default=SHIPPED["tang"], help="--shipped: the Tang export to serve")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)  # the engine timings run as the server does

    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "processor": platform.processor(), "torch": torch.__version__,
                                 "server_torch_threads": args.torch_threads,
                                 "server_workers": args.workers, "shipped_models": args.shipped,
                                 "capability": cpu_capability()},
                     "chars_per_request": CHARS, "levels": [], "engine": {}}
    server_log = Path(tempfile.gettempdir()) / "textgen-load-server.log"
    server_log.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="textgen-load-") as tmp:
        root = Path(tmp)
        for vocab in args.vocab:
            shipped = {**SHIPPED, "tang": args.tang_export}
            path = REPO / "checkpoints" / shipped[vocab] if args.shipped else build_export(root / "checkpoints", vocab)
            vocab_size = load_export(path).tokenizer.vocab_size
            texts = prompts(vocab)
            if args.engine:
                results["engine"][vocab] = {"vocab_size": vocab_size, **engine(path, texts)}
                print(vocab, results["engine"][vocab], flush=True)
            for batching in args.batching:
                for quantize in args.quantize:
                    server = Server(path.parent, 32 if batching == "on" else 1, server_log, args.torch_threads,
                                    args.workers, quantize, args.encoder_runtime)
                    try:
                        run_level(server.url, path.name, texts, 2, 2, 60)  # warm up (first-step allocations)
                        runtime = served_runtime(server.url, path.name)  # what `auto` chose, once loaded
                        print(f"{path.name}: {runtime}", flush=True)
                        for clients in args.clients:
                            per_client = args.requests_per_client * (4 if clients == 1 else 1)
                            if args.same_rows and clients > 1 and batching == "on":
                                level = yardstick_level(server.url, path, quantize, args.encoder_runtime, texts,
                                                        clients, per_client, args.rounds, args.limit_s)
                            else:
                                level = run_level(server.url, path.name, texts, clients, per_client, args.limit_s)
                            level.update(vocab=vocab, vocab_size=vocab_size, batching=batching, quantize=quantize,
                                         encoder_runtime=args.encoder_runtime, runtime=runtime,
                                         load=round(os.getloadavg()[0], 2))
                            results["levels"].append(level)
                            print(json.dumps(level), flush=True)
                    finally:
                        server.close()
    print()
    print(table(results["levels"]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
