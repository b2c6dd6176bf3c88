"""Prometheus metrics of one app (its own registry, so several apps in one process never clash)."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from textgen.export import LoadedModel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The metrics the contract lists, labelled by endpoint (the route rule, not the raw path) or model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("textgen_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("textgen_request_latency_seconds",
                                 "Time to the response (streams: until the stream ends)", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.generated_chars = Counter("textgen_generated_chars", "Characters generated", ["model"], registry=r)
        self.queue_depth = Gauge("textgen_queue_depth", "Requests waiting to join a batch", ["model"], registry=r)
        self.active_rows = Gauge("textgen_active_rows", "Rows (samples) being decoded now", ["model"], registry=r)
        self.batch_size = Histogram("textgen_batch_size", "Rows per decoding step", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.encoder_rows = Histogram("textgen_encoder_rows",
                                      "Rows per context read: rows joining the batch or re-reading their context "
                                      "(_count: reads, _sum: rows)", ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.encoder_seconds = Counter("textgen_encoder_seconds", "Time spent reading contexts", ["model"], registry=r)
        self.model_loads = Counter("textgen_model_loads", "Model loads by outcome", ["model", "outcome"], registry=r)
        self.runtime = Gauge("textgen_runtime", "How a loaded model decodes (1 for its current settings; `auto` "
                             "chose them by timing on this machine, or from its cache)",
                             ["model", "quantize", "decode_step", "encoder_runtime", "cached"], registry=r)
        self.runtime_timings = Gauge("textgen_runtime_candidate_seconds",
                                     "What `auto` measured at load: seconds a decoding step (part=step) or a context "
                                     "read (part=encoder) of each candidate took at each size",
                                     ["model", "part", "candidate", "rows"], registry=r)
        self._runtime_labels: dict[str, list[tuple[Gauge, tuple[str, ...]]]] = {}

    def record_runtime(self, model: str, loaded: LoadedModel) -> None:
        """Show how ``loaded`` decodes, and what ``auto`` measured for it (replacing an earlier load's)."""
        for gauge, labels in self._runtime_labels.pop(model, []):
            gauge.remove(*labels)
        choice = loaded.runtime_choice
        cached = str(bool(choice is not None and choice.cached)).lower()
        shown = [(self.runtime, (model, loaded.quantize, loaded.decode_step, loaded.encoder_runtime, cached), 1.0)]
        if choice is not None:
            for part, table in (("step", choice.step_ms), ("encoder", choice.encoder_ms)):
                shown += [(self.runtime_timings, (model, part, candidate, rows), ms / 1e3)
                          for candidate, sizes in table.items() for rows, ms in sizes.items()]
        for gauge, labels, value in shown:
            gauge.labels(*labels).set(value)
        self._runtime_labels[model] = [(gauge, labels) for gauge, labels, _ in shown]

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def init_app(app: Flask, metrics: Metrics) -> None:
    """Count every request and time it; a stream is timed until its last byte."""

    @app.before_request
    def _start_timer() -> None:
        g.textgen_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        endpoint = _endpoint()
        started = g.get("textgen_started", time.perf_counter())
        labels = dict(endpoint=endpoint, method=request.method, status=str(response.status_code))

        def record() -> None:
            metrics.requests.labels(**labels).inc()
            metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)

        if response.is_streamed:
            response.call_on_close(record)
        else:
            record()
        return response
