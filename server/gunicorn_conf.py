"""Production settings for gunicorn: ``gunicorn -c server/gunicorn_conf.py 'server:create_app()'``.

One process holds each model once and batches all of its requests, so the default is one worker
with many threads (a streaming request holds a thread while it runs) and one torch thread.
Several workers (``TEXTGEN_WORKERS``) each load the models and batch on their own, one core each.

SIGTERM drains: the worker stops accepting connections, ``/health`` and new generations answer
503 on connections already open, running requests (streams too) finish within
``graceful_timeout``, then the process exits.
"""

import os
import signal

bind = os.environ.get("TEXTGEN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("TEXTGEN_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("TEXTGEN_THREADS", "64"))
graceful_timeout = int(float(os.environ.get("TEXTGEN_DRAIN_TIMEOUT_S", "60")))
timeout = 120  # heartbeat of an idle worker loop, not a request limit (streams may run longer)
keepalive = 5
accesslog = os.environ.get("TEXTGEN_ACCESS_LOG", "-") or None  # "-": stderr; empty: no access log
os.environ.setdefault("TEXTGEN_PRELOAD", "true")  # load the models when a worker starts, not on a request
# One decoding step is a few small matrix products: torch's intra-op threads mostly wait on each other
# (2 threads were 1.3-4x slower per step than 1 on the 2-core test machine, docs/SERVING.md).
os.environ.setdefault("TEXTGEN_TORCH_THREADS", "1")


def post_worker_init(worker):
    """On SIGTERM, mark the app draining before gunicorn's own graceful exit starts."""
    state = worker.wsgi.extensions["textgen"]
    previous = signal.getsignal(signal.SIGTERM)

    def drain(signum, frame):
        state.draining.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, drain)
