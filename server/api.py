"""The JSON API: health, model list, generation (whole or streamed), metrics, OpenAPI description.

Views decode the request, call the library (``textgen.sampling`` through the model's batcher,
``textgen.forms`` for forms) and encode the answer; every failure is an :class:`APIError`.
"""

from __future__ import annotations

import importlib
import json
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError

from textgen.sampling import SamplingError, SamplingParams
from textgen.tokenizer import TokenizerError

from server.batching import Batcher, Job, JobFailed, QueueFull
from server.errors import APIError
from server.openapi import build_spec
from server.registry import ModelUnavailable, UnknownModel
from server.schemas import GenerateRequest, GenerateResponse, Health, ModelList, dump
from server.state import ServerState

bp = Blueprint("api", __name__)
KEEPALIVE_S = 1.0  # a stream that has nothing to say sends a comment this often (and so notices a gone client)


def state() -> ServerState:
    return current_app.extensions["textgen"]


# --------------------------------------------------------------------------- plain endpoints
@bp.get("/health")
def health() -> tuple[Response, int]:
    """200 while a model can be served; 503 when none can, or while the server drains."""
    s = state()
    models = s.registry.available()
    status = "draining" if s.draining.is_set() else ("ok" if models else "unavailable")
    return jsonify(dump(Health(status=status, models=models))), 200 if status == "ok" else 503


@bp.get("/v1/models")
def models() -> Response:
    """The exported models, read from their files (listing loads nothing)."""
    cards = [listing.card() for listing in state().registry.listings()]
    return jsonify(ModelList.model_validate({"models": cards}).model_dump())


@bp.get("/v1/models/<name>/latex")
def model_latex(name: str) -> Response:
    """What ``form: latex`` text of this model compiles with: its preamble and the wrapper (404 when
    the model has no LaTeX files); ``macros`` are the preamble's own, for renderers such as KaTeX."""
    from textgen.forms.latex import latex_tables
    from textgen.forms.latex_vocab import preamble_macros, wrap_document

    try:
        loaded = state().registry.get(name).loaded
    except UnknownModel as error:
        raise APIError(404, str(error), field="model") from error
    except ModelUnavailable as error:
        raise APIError(503, str(error), field="model") from error
    found = latex_tables(loaded.tokenizer, loaded.path)
    if found is None:
        raise APIError(404, f"model {name!r} does not write LaTeX (its export has no preamble.tex and latex.json)",
                       field="model")
    preamble = found[1]
    return jsonify({"model": name, "preamble": preamble, "document": wrap_document("{preamble}", "{text}"),
                    "macros": preamble_macros(preamble)})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    return state().metrics.render()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this server (limits as configured)."""
    s = state()
    return jsonify(build_spec(s.settings, [listing.info.name for listing in s.registry.listings()]))


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
        raise APIError(415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise APIError(415, f"the body must be UTF-8, got charset {charset!r}")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: werkzeug raises 413
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        if isinstance(value, dict):  # a lone surrogate ("\ud800") is no text; in a prompt it is a 422 (below)
            _check_text({key: item for key, item in value.items() if key != "prompt"})
    except UnicodeError as error:
        raise APIError(400, f"the body is not valid UTF-8: {error}") from error
    except (ValueError, RecursionError) as error:
        raise APIError(400, f"the body is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise APIError(400, f"the body must be a JSON object, got {type(value).__name__}")
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


def _validation_error(error: ValidationError) -> APIError:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = loc[0] if loc else None
    where = ".".join(loc)
    if first["type"] == "extra_forbidden":
        return APIError(422, f"unknown field `{where}`", field=field)
    if first["type"] == "missing":
        return APIError(422, f"`{where}` is required", field=field)
    return APIError(422, f"`{where}`: {first['msg']}", field=field)


def _prepare_form(form: dict[str, Any], batcher: Batcher, prompt: str):
    try:
        forms = importlib.import_module("textgen.forms")
        prepare_form, form_error = forms.prepare_form, forms.FormError
    except (ImportError, AttributeError) as error:
        raise APIError(422, "forms are not available on this server", field="form") from error
    try:
        return prepare_form(form, batcher.loaded, prompt)
    except form_error as error:
        raise APIError(422, str(error), field=getattr(error, "field", None) or "form") from error


def accept(stream: bool) -> Accepted:
    """Validate a generation request and queue it (every 4xx/5xx is raised before any text is sent)."""
    s = state()
    body = read_json_object()
    try:
        req = GenerateRequest.model_validate(body)
    except ValidationError as error:
        raise _validation_error(error) from error
    limits = s.settings.limits
    if len(req.prompt) > limits.max_prompt_chars:
        raise APIError(413, f"`prompt` has {len(req.prompt)} characters, over the limit of "
                            f"{limits.max_prompt_chars}", field="prompt")
    if req.max_new_chars > limits.max_new_chars:
        raise APIError(422, f"`max_new_chars` must be at most {limits.max_new_chars}, got {req.max_new_chars}",
                       field="max_new_chars")
    try:
        params = SamplingParams(
            max_new_chars=req.max_new_chars, temperature=req.temperature, top_k=req.top_k, top_p=req.top_p,
            repetition_penalty=req.repetition_penalty, seed=req.seed, stop=req.stop, n=req.n,
            return_logprobs=req.return_logprobs,
        )
    except SamplingError as error:
        raise APIError(422, str(error), field=error.field) from error
    if s.draining.is_set():
        raise APIError(503, "the server is shutting down", headers={"Retry-After": "5"})
    try:
        batcher = s.registry.get(req.model)
    except UnknownModel as error:
        raise APIError(404, str(error), field="model") from error
    except ModelUnavailable as error:
        raise APIError(503, str(error), field="model") from error
    try:
        batcher.loaded.tokenizer.encode(req.prompt)
    except TokenizerError as error:
        raise APIError(422, f"`prompt`: {error}", field="prompt") from error
    prompt, new_constraint, echo = req.prompt, None, ""
    if req.form is not None:
        prepared = _prepare_form(req.form, batcher, req.prompt)
        if prepared is not None:
            prompt, new_constraint, echo = prepared.prompt, prepared.new_constraint, prepared.echo
    try:
        rows = batcher.make_rows(prompt, params, new_constraint)
    except SamplingError as error:
        raise APIError(422, str(error), field=error.field) from error
    try:
        job = batcher.submit(rows, stream=stream)
    except QueueFull as error:
        raise APIError(429, str(error), headers={"Retry-After": str(error.retry_after)}) from error
    except JobFailed as error:
        raise APIError(503, str(error)) from error
    return Accepted(req, batcher, job, prompt, echo)


def _job_error(job: Job) -> APIError:
    if job.error == "cancelled":
        return APIError(503, "the request was cancelled")
    return APIError(500, f"generation failed: {job.error}")


@bp.post("/v1/generate")
def generate() -> Response:
    """Generate; answer when every sample is done."""
    accepted = accept(stream=False)
    job = accepted.job
    try:
        job.done.wait()
    finally:
        if not job.done.is_set():
            accepted.batcher.cancel(job)
    if job.error is not None:
        raise _job_error(job)
    samples = [job.samples[i] for i in range(len(job.rows))]
    response = GenerateResponse.model_validate({
        "model": accepted.request.model,
        "samples": [{"text": accepted.echo + s.text, "finish_reason": s.finish_reason, "logprob": s.logprob} for s in samples],
        "usage": {"prompt_chars": len(accepted.prompt), "generated_chars": sum(s.generated_chars for s in samples)},
        "timing": {"queue_ms": round(job.queue_ms, 3), "generate_ms": round(job.generate_ms, 3)},
    })
    return jsonify(dump(response))


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _event(kind: str, index: int | None, payload: Any, job: Job) -> str:
    if kind == "text":
        return _sse({"index": index, "text": payload})
    if kind == "finish":
        event = {"index": index, "finish_reason": payload.finish_reason, "generated_chars": payload.generated_chars}
        if payload.logprob is not None:
            event["logprob"] = payload.logprob
        return _sse(event)
    if kind == "error":
        return _sse(_job_error(job).body()) + "data: [DONE]\n\n"
    return ""


@bp.post("/v1/generate/stream")
def generate_stream() -> Response:
    """Generate as Server-Sent Events: text events per step, a finish event per sample, then [DONE]."""
    accepted = accept(stream=True)
    job, batcher = accepted.job, accepted.batcher
    prompt_chars = len(accepted.prompt)

    def events() -> Iterator[str]:
        try:
            if accepted.echo:  # a latex form's opening and prompt come first, so the text compiles alone
                yield "".join(_sse({"index": i, "text": accepted.echo}) for i in range(len(job.rows)))
            while True:
                try:
                    batch = [job.events.get(timeout=KEEPALIVE_S)]
                except queue.Empty:
                    yield ": keep-alive\n\n"  # writing is how a gone client is noticed
                    continue
                while True:  # everything already waiting goes out in one write
                    try:
                        batch.append(job.events.get_nowait())
                    except queue.Empty:
                        break
                chunk = []
                for kind, index, payload in batch:
                    if kind == "done":
                        usage = {"prompt_chars": prompt_chars,
                                 "generated_chars": sum(s.generated_chars for s in job.samples.values())}
                        timing = {"queue_ms": round(job.queue_ms, 3), "generate_ms": round(job.generate_ms, 3)}
                        chunk.append(_sse({"usage": usage, "timing": timing}) + "data: [DONE]\n\n")
                        yield "".join(chunk)
                        return
                    chunk.append(_event(kind, index, payload, job))
                    if kind == "error":
                        yield "".join(chunk)
                        return
                yield "".join(chunk)
        finally:
            if not job.done.is_set():
                batcher.cancel(job)  # the client went away: free its rows

    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
