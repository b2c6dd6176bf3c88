"""Default poem requests over REST, checked by the independent checker (tests/poem_rules.py).

    OMP_NUM_THREADS=1 python benchmarks/poems_rest_check.py --checkpoints checkpoints --model tang-gru \\
        [--titles 10] [--n 2] [--data-dir ../shared/data]

Serves the exports with ``server.create_app`` on a loopback port (a real socket, werkzeug), then
for each temperature 0, 0.5, 1.0 and 1.5 and each held-out title (the titles of the Tang validation
poems) asks ``POST /v1/generate`` for a default ``jueju``/``lushi`` of 5 and 7 characters (rhyme by
平水韵 by default; ``lushi`` also tones) and a ``jueju`` with ``tones: true``, and prints the share of
poems the checker finds compliant by 平水韵 (rhyme; pattern, 孤平, 三平尾 where tones apply).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import requests
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import poem_rules  # noqa: E402, I001
from forms_report import val_poems  # noqa: E402

from server import create_app  # noqa: E402

TEMPERATURES = (0.0, 0.5, 1.0, 1.5)
FORMS = [
    {"kind": "jueju", "chars_per_line": 5},
    {"kind": "jueju", "chars_per_line": 7},
    {"kind": "lushi", "chars_per_line": 5},
    {"kind": "lushi", "chars_per_line": 7},
    {"kind": "jueju", "chars_per_line": 7, "tones": True},
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--model", default="tang-gru")
    parser.add_argument("--titles", type=int, default=10, help="held-out titles per temperature")
    parser.add_argument("--n", type=int, default=2, help="poems per request")
    parser.add_argument("--data-dir", default="/work/shared/data")
    args = parser.parse_args(argv)
    app = create_app({"checkpoints": args.checkpoints, "torch_threads": 1})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    titles = [t for t, _ in val_poems(Path(args.data_dir)) if len(t) <= 12][:args.titles]
    print(f"`python benchmarks/poems_rest_check.py {' '.join(sys.argv[1:] if argv is None else argv)}`: "
          f"{len(titles)} held-out titles, n={args.n} a request, via {url}", flush=True)
    print("\n| form (by 平水韵) | temperature | poems | compliant | seconds |\n| --- | ---: | ---: | ---: | ---: |")
    total = good = 0
    failures = []
    for form in FORMS:
        for temperature in TEMPERATURES:
            poems = ok = 0
            began = time.perf_counter()
            for i, title in enumerate(titles):
                body = {"model": args.model, "n": args.n, "seed": i, "temperature": temperature,
                        "form": {**form, "title": title}}
                answer = requests.post(url + "/v1/generate", json=body, timeout=600)
                answer.raise_for_status()
                for sample in answer.json()["samples"]:
                    problems = poem_rules.poem_problems(sample["text"], form)
                    poems += 1
                    ok += not problems
                    if problems:
                        failures.append((form, temperature, title, sample["text"], problems))
            total, good = total + poems, good + ok
            print(f"| `{form}` | {temperature} | {poems} | {ok} ({100 * ok / poems:.0f}%) | "
                  f"{time.perf_counter() - began:.1f} |", flush=True)
    print(f"\nAll: {good} of {total} compliant.")
    for failure in failures[:10]:
        print("FAILED", failure)
    server.shutdown()


if __name__ == "__main__":
    main()
