"""The JSON API: health, model list, generation (whole or streamed), metrics, OpenAPI description.

Views decode the request, call the library (``textgen.sampling`` through the model's batcher,
``textgen.forms`` for forms) and encode the answer; every failure is an :class:`APIError`.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from server.batching import Batcher, DoneEvent, ErrorEvent, FinishEvent, Job, JobEvent, TextEvent
from server.error_kinds import ErrorKind
from server.errors import APIError
from server.openapi import GENERATION_ERRORS, STREAM_OK, describe, json_content
from server.openapi import build_spec as build_openapi
from server.schemas import GenerateRequest, GenerateResponse, Health, ModelList, dump
from server.state import ServerState
from textgen.sampling import SamplingParams, select_best

bp = Blueprint("api", __name__)
OWNED_BY = "textgen"  # the `owned_by` of every model in the OpenAI list shape


def state() -> ServerState:
    return current_app.extensions["textgen"]


# --------------------------------------------------------------------------- plain endpoints
@bp.get("/health")
@describe(summary="Whether a model can be served", operation_id="health", responses={
    HTTPStatus.OK: {"description": "Serving.", "content": json_content("Health")},
    HTTPStatus.SERVICE_UNAVAILABLE: {"description": "No model can be loaded, or the server is draining.",
                                     "content": json_content("Health")}})
def health() -> tuple[Response, int]:
    """200 while a model can be served; 503 when none can, or while the server drains."""
    s = state()
    models = s.registry.available()
    status = "draining" if s.draining.is_set() else ("ok" if models else "unavailable")
    answer = jsonify(dump(Health(status=status, models=models)))
    answer.status_code = HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return answer


@bp.get("/v1/models")
@describe(summary="The exported models", operation_id="listModels", responses={
    HTTPStatus.OK: {"description": "Every export in the checkpoints folder.", "content": json_content("ModelList")}})
def models() -> Response:
    """The exported models, read from their files (listing loads nothing), in the OpenAI list shape too."""
    registry = state().registry
    cards = [{**listing.card(), "runtime": registry.runtime(listing.info.name)} for listing in registry.listings()]
    data = [{**card, "id": card["name"], "object": "model", "created": _epoch(card["created"]),
             "owned_by": OWNED_BY} for card in cards]
    return jsonify(ModelList.model_validate({"object": "list", "data": data, "models": cards}).model_dump())


def _epoch(iso: str) -> int:
    """An export's ISO creation time in seconds since 1970 (0 if it cannot be read)."""
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return 0


LATEX_FILES = {"application/json": {"schema": {
    "type": "object", "required": ["model", "preamble", "document", "macros"],
    "properties": {"model": {"type": "string"}, "preamble": {"type": "string"}, "document": {"type": "string"},
                   "macros": {"type": "object", "additionalProperties": {"type": "string"}}}}}}


@bp.get("/v1/models/<name>/latex")
@describe(summary="What a model's `form: latex` text compiles with", operation_id="modelLatex",
          parameters=({"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},),
          responses={HTTPStatus.OK: {"description": "The preamble, the document wrapper and the preamble's macros.",
                             "content": LATEX_FILES}},
          errors=(ErrorKind.UNKNOWN_MODEL, ErrorKind.NO_LATEX, ErrorKind.MODEL_UNAVAILABLE, ErrorKind.SHUTTING_DOWN))
def model_latex(name: str) -> Response:
    """What ``form: latex`` text of this model compiles with: its preamble and the wrapper (404 when
    the model has no LaTeX files); ``macros`` are the preamble's own, for renderers such as KaTeX."""
    from server.katex import preamble_macros
    from textgen.forms.latex import latex_tables
    from textgen.pdflatex import wrap_document

    loaded = model_batcher(name).loaded  # UnknownModel / ModelUnavailable: 404 / 503 (server.errors)
    found = latex_tables(loaded.tokenizer, loaded.path)
    if found is None:
        raise APIError(ErrorKind.NO_LATEX, f"model {name!r} does not write LaTeX (its export has no preamble.tex and latex.json)",
                       field="model")
    preamble = found[1]
    return jsonify({"model": name, "preamble": preamble, "document": wrap_document("{preamble}", "{text}"),
                    "macros": preamble_macros(preamble)})


@bp.get("/metrics")
@describe(summary="Prometheus metrics", operation_id="metrics", responses={
    HTTPStatus.OK: {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    """Prometheus text format."""
    return state().metrics.render()


@bp.get("/openapi.json")
@describe(summary="This description", operation_id="openapi", responses={
    HTTPStatus.OK: {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}}})
def openapi() -> Response:
    """The OpenAPI 3.1 description of this server's routes (limits as configured)."""
    s = state()
    return jsonify(build_openapi(s.settings, [listing.info.name for listing in s.registry.listings()],
                                 app=current_app, keys_required=s.keys.required))


# --------------------------------------------------------------------------- generation
@dataclass
class Accepted:
    """A validated request, queued."""

    request: GenerateRequest
    batcher: Batcher
    job: Job
    prompt: str
    echo: str = ""
    """Returned before each sample's text (a ``latex`` form's opening and prompt: the text compiles alone)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_object() -> dict[str, Any]:
    """The body as a JSON object: 415 unless JSON, 413 over the limit, 400 unless a UTF-8 JSON object."""
    if request.mimetype != "application/json":
        raise APIError(ErrorKind.UNSUPPORTED_MEDIA, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise APIError(ErrorKind.UNSUPPORTED_MEDIA, f"the body must be UTF-8, got charset {charset!r}")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: werkzeug raises 413
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        if isinstance(value, dict):  # a lone surrogate ("\ud800") is no text; in a prompt it is a 422 (below)
            _check_text({key: item for key, item in value.items() if key != "prompt"})
    except UnicodeError as error:
        raise APIError(ErrorKind.BAD_JSON, f"the body is not valid UTF-8: {error}") from error
    except (ValueError, RecursionError) as error:
        raise APIError(ErrorKind.BAD_JSON, f"the body is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise APIError(ErrorKind.BAD_JSON, f"the body must be a JSON object, got {type(value).__name__}")
    return value


def _check_text(value: Any) -> None:
    """Raise UnicodeEncodeError if a string in ``value`` holds a lone surrogate."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def check_limits(prompt: str, max_new_chars: int, *, length_field: str = "max_new_chars") -> None:
    """413 for a prompt over the configured limit, 422 for more characters than it allows."""
    limits = state().settings.limits
    if len(prompt) > limits.max_prompt_chars:
        raise APIError(ErrorKind.TOO_LARGE, f"`prompt` has {len(prompt)} characters, over the limit of "
                            f"{limits.max_prompt_chars}", field="prompt")
    if max_new_chars > limits.max_new_chars:
        raise APIError(ErrorKind.INVALID, f"`{length_field}` must be at most {limits.max_new_chars}, got {max_new_chars}",
                       field=length_field)


def model_batcher(name: str) -> Batcher:
    """The batcher of model ``name`` (503 while draining; the registry raises 404/503 itself)."""
    s = state()
    if s.draining.is_set():
        raise APIError(ErrorKind.SHUTTING_DOWN, "the server is shutting down",
                       headers={"Retry-After": str(s.settings.shutdown.retry_after_s)})
    return s.registry.get(name)


def accept(stream: bool) -> Accepted:
    """Validate a generation request and queue it (every 4xx/5xx is raised before any text is sent)."""
    req = GenerateRequest.model_validate(read_json_object())
    check_limits(req.prompt, req.max_new_chars)
    # Every sampler field the request has, under the same name (a new one needs no line here).
    params = SamplingParams(**{f.name: getattr(req, f.name) for f in fields(SamplingParams)
                               if f.name in GenerateRequest.model_fields})
    if stream:
        refuse_ranked_stream(params)
    batcher = model_batcher(req.model)
    part = batcher.prepare(req.prompt, params, req.form)
    return Accepted(req, batcher, batcher.submit([part], stream=stream), part.read, part.echo)


def refuse_ranked_stream(params: SamplingParams) -> None:
    """A stream cannot rank candidates it has already sent: ``best_of`` > ``n`` is refused (as OpenAI does)."""
    if params.candidates > params.n:
        raise APIError(ErrorKind.INVALID, f"`best_of` ({params.best_of}) greater than `n` ({params.n}) cannot be streamed: "
                            "the best candidates are known only when all are done", field="best_of")


def wait_for(job: Job, batcher: Batcher) -> None:
    """Wait until ``job`` is done (cancelling it if this thread is interrupted); raise its failure."""
    try:
        job.done.wait()
    finally:
        if not job.done.is_set():
            batcher.cancel(job)
    if job.failure is not None:
        raise job_error(job)


def job_error(job: Job) -> APIError:
    """The answer for a job that failed or was cancelled."""
    assert job.failure is not None
    return APIError(job.failure.kind, job.failure.message)


@bp.post("/v1/generate")
@describe(summary="Generate; answer when done", operation_id="generate", request="GenerateRequest",
          responses={HTTPStatus.OK: {"description": "The samples.", "content": json_content("GenerateResponse")}},
          errors=GENERATION_ERRORS)
def generate() -> Response:
    """Generate; answer when every sample is done."""
    accepted = accept(stream=False)
    job = accepted.job
    wait_for(job, accepted.batcher)
    candidates = [job.samples[i] for i in range(len(job.rows))]
    params = job.rows[0].params
    samples = select_best(candidates, params.n) if params.candidates > params.n else candidates
    response = GenerateResponse.model_validate({
        "model": accepted.request.model,
        "samples": [{"text": accepted.echo + s.text, "finish_reason": s.finish_reason, "logprob": s.logprob,
                     "top_logprobs": s.top_logprobs if params.top_logprobs else None} for s in samples],
        "usage": {"prompt_chars": len(accepted.prompt),
                  "generated_chars": sum(s.generated_chars for s in candidates)},
        "timing": {"queue_ms": round(job.queue_ms, 3), "generate_ms": round(job.generate_ms, 3)},
    })
    return jsonify(dump(response))


def sse_data(payload: Any) -> str:
    """One Server-Sent Event carrying ``payload`` as JSON (every stream's events: native and OpenAI)."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


@bp.post("/v1/generate/stream")
@describe(summary="Generate as a stream of Server-Sent Events", operation_id="generateStream",
          request="GenerateRequest", responses={HTTPStatus.OK: STREAM_OK}, errors=GENERATION_ERRORS)
def generate_stream() -> Response:
    """Generate as Server-Sent Events: text events per step, a finish event per sample, then [DONE]."""
    accepted = accept(stream=True)
    job = accepted.job
    prompt_chars = len(accepted.prompt)

    def render(event: JobEvent) -> str:
        match event:
            case TextEvent(index, text, _, _, top):
                return sse_data({"index": index, "text": text} if top is None else
                            {"index": index, "text": text, "top_logprobs": top})
            case FinishEvent(index, sample):
                payload = {"index": index, "finish_reason": sample.finish_reason,
                           "generated_chars": sample.generated_chars}
                if sample.logprob is not None:
                    payload["logprob"] = sample.logprob
                return sse_data(payload)
            case ErrorEvent():
                return sse_data(job_error(job).body()) + "data: [DONE]\n\n"
            case DoneEvent():
                usage = {"prompt_chars": prompt_chars,
                         "generated_chars": sum(s.generated_chars for s in job.samples.values())}
                timing = {"queue_ms": round(job.queue_ms, 3), "generate_ms": round(job.generate_ms, 3)}
                return sse_data({"usage": usage, "timing": timing}) + "data: [DONE]\n\n"

    # a latex form's opening and prompt come first, so that each sample's text compiles alone
    first = "".join(sse_data({"index": i, "text": accepted.echo}) for i in range(len(job.rows))) if accepted.echo else ""
    return sse_response(job, accepted.batcher, render, first)


Render = Callable[[JobEvent], str]


def sse_response(job: Job, batcher: Batcher, render: Render, first: str = "") -> Response:
    """Stream ``job`` as Server-Sent Events: ``first``, then ``render(event)`` of each of its events.

    The stream ends after the :class:`DoneEvent` or :class:`ErrorEvent` (whose rendering ends with
    ``data: [DONE]``).  Events already waiting go out in one write; an idle stream sends a comment
    every ``streaming.keepalive_s`` seconds, and writing is how a gone client is noticed: its rows then
    leave the batch.
    """
    keepalive_s = state().settings.streaming.keepalive_s

    def events() -> Iterator[str]:
        try:
            if first:
                yield first
            while True:
                try:
                    batch = [job.events.get(timeout=keepalive_s)]
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                while True:
                    try:
                        batch.append(job.events.get_nowait())
                    except queue.Empty:
                        break
                yield "".join(render(event) for event in batch)
                if any(isinstance(event, DoneEvent | ErrorEvent) for event in batch):
                    return
        finally:
            if not job.done.is_set():
                batcher.cancel(job)  # the client went away: free its rows

    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
