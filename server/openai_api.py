"""``POST /v1/completions``: OpenAI's completions API over the same batcher, registry and sampler.

The official ``openai`` clients, LangChain and curl scripts work with ``base_url=http://host/v1``
and any API key.  A request's fields map onto :class:`textgen.sampling.SamplingParams` (its
defaults are textgen's, see :mod:`server.openai_schemas`); each prompt of a list becomes ``best_of``
rows of one job.  Tokens are characters.  Errors on this blueprint's routes answer in OpenAI's
shape, ``{"error": {"message", "type", "param", "code"}}`` (:func:`openai_error_body`), with the
statuses the client maps (statuses are chosen once, in :mod:`server.errors`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, jsonify

from server import errors
from server.api import (
    check_limits,
    job_error,
    model_batcher,
    read_json_object,
    refuse_ranked_stream,
    sse_data,
    sse_response,
    wait_for,
)
from server.batching import Batcher, DoneEvent, ErrorEvent, FinishEvent, Job, JobEvent, TextEvent
from server.errors import APIError
from server.openai_schemas import OPENAI_NAMES, Completion, CompletionRequest
from server.openapi import COMPLETIONS_OK, GENERATION_ERRORS, describe
from textgen.evaluation import continuation_logprobs
from textgen.sampling import Sample, SamplingParams, select_best

bp = Blueprint("openai", __name__)

FINISH_REASONS = {"length": "length", "stop": "stop", "form_complete": "stop"}
"""textgen's finish reasons in OpenAI's words: a completed form is a natural stop."""


def openai_error_body(error: APIError, route: str = "completions") -> dict[str, Any]:
    """An error in OpenAI's shape: its kind's ``type`` and ``code``, ``param`` in the route's own names."""
    spec = error.kind.value
    names = OPENAI_NAMES[route]
    param = names.get(error.field, error.field) if error.field else None
    return {"error": {"message": error.message, "type": spec.openai_type, "param": param,
                      "code": spec.openai_code or spec.code}}


errors.register_shape(bp.name, openai_error_body, paths=("/v1/completions",))


@dataclass
class Planned:
    """A validated completion request, queued as one job of ``len(prompts) * params.candidates`` rows."""

    request: CompletionRequest
    params: SamplingParams
    batcher: Batcher
    prompts: list[str]
    """Each prompt as the model read it (a form may add a title line)."""
    job: Job
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def echo(self, i: int) -> str:
        return self.prompts[i] if self.request.echo else ""


def plan() -> Planned:
    """Validate the request and queue its rows (every error is raised before any text is sent)."""
    req = CompletionRequest.model_validate(read_json_object())
    params = req.params()
    for prompt in req.prompts():
        check_limits(prompt, params.max_new_chars, length_field="max_tokens")
    if req.stream:
        refuse_ranked_stream(params)
    batcher = model_batcher(req.model)
    parts = [batcher.prepare(prompt, params, req.form) for prompt in req.prompts()]
    return Planned(req, params, batcher, [part.read for part in parts], batcher.submit(parts, stream=req.stream))


@bp.post("/v1/completions")
@describe(summary="OpenAI-compatible completions (tokens are characters)", operation_id="createCompletion",
          request="CompletionRequest", responses={HTTPStatus.OK: COMPLETIONS_OK}, errors=GENERATION_ERRORS,
          error_body="OpenAIErrorBody")
def completions() -> Response:
    """OpenAI's completions: the whole answer, or (``stream``) completion chunks as Server-Sent Events."""
    planned = plan()
    if planned.request.stream:
        return stream(planned)
    wait_for(planned.job, planned.batcher)
    return jsonify(answer(planned))


def answer(planned: Planned) -> dict[str, Any]:
    """The completion: for each prompt in turn, its ``n`` samples (the best first under ``best_of``)."""
    params, job = planned.params, planned.job
    per_prompt = params.candidates
    choices = []
    for i in range(len(planned.prompts)):
        candidates = [job.samples[i * per_prompt + j] for j in range(per_prompt)]
        kept = select_best(candidates, params.n) if per_prompt > params.n else candidates
        for sample in kept:
            choices.append(choice(planned, i, len(choices), sample))
    body = {"id": planned.id, "object": "text_completion", "created": planned.created,
            "model": planned.request.model, "choices": choices, "usage": usage(planned)}
    return Completion.model_validate(body).model_dump()


def choice(planned: Planned, prompt: int, index: int, sample: Sample) -> dict[str, Any]:
    """One choice of a whole answer."""
    echo = planned.echo(prompt)
    return {"index": index, "text": echo + sample.text, "finish_reason": FINISH_REASONS[sample.finish_reason],
            "logprobs": logprobs(planned, prompt, sample.text, sample.char_logprobs, sample.top_logprobs,
                                 offset=0, with_echo=True)}


def logprobs(planned: Planned, prompt: int, text: str, values: list[float] | None,
             top: list[dict[str, float]] | None, *, offset: int, with_echo: bool) -> dict[str, Any] | None:
    """OpenAI's ``logprobs`` object of ``text`` (one token a character), from ``offset`` in the choice's text.

    With ``echo`` (and ``with_echo``) the prompt's characters come first, scored by the model after
    nothing but the start of text; their top characters are not computed (empty objects).
    """
    if planned.request.logprobs is None:
        return None
    tokens, scores = list(text), list(values or [])
    tops = list(top) if planned.request.logprobs else None
    echo = planned.echo(prompt) if with_echo else ""
    if echo:
        tokens = list(echo) + tokens
        scores = continuation_logprobs(planned.batcher.loaded, "", echo) + scores
        tops = [{} for _ in echo] + tops if tops is not None else None
    return {"tokens": tokens, "token_logprobs": scores, "top_logprobs": tops,
            "text_offset": list(range(offset, offset + len(tokens)))}


def usage(planned: Planned) -> dict[str, int]:
    """Characters read and written; every candidate's characters count."""
    prompt = sum(len(p) for p in planned.prompts)
    completion = sum(s.generated_chars for s in planned.job.samples.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# --------------------------------------------------------------------------- streaming
def stream(planned: Planned) -> Response:
    """Completion chunks: the echoed prompts, text as it is written, a finish chunk per choice, [DONE]."""
    req, job = planned.request, planned.job

    def chunk(index: int, text: str, finish: str | None = None, lp: dict | None = None) -> str:
        return sse_data({"id": planned.id, "object": "text_completion", "created": planned.created, "model": req.model,
                      "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": lp}]})

    def text_chunk(event: TextEvent) -> str:
        index, text = event.index, event.text
        lp = logprobs(planned, index // planned.params.n, text, event.logprobs, event.top,
                      offset=len(planned.echo(index // planned.params.n)) + event.start, with_echo=False)
        return chunk(index, text, lp=lp)

    def render(event: JobEvent) -> str:
        match event:
            case TextEvent():
                return text_chunk(event)
            case FinishEvent(index, sample):
                return chunk(index, "", FINISH_REASONS[sample.finish_reason])
            case ErrorEvent():
                return sse_data(openai_error_body(job_error(job))) + "data: [DONE]\n\n"
            case DoneEvent():
                last = ""
                if req.stream_options is not None and req.stream_options.include_usage:
                    last = sse_data({"id": planned.id, "object": "text_completion", "created": planned.created,
                                  "model": req.model, "choices": [], "usage": usage(planned)})
                return last + "data: [DONE]\n\n"

    first = ""
    if req.echo:
        n = planned.params.n
        first = "".join(
            chunk(index, planned.prompts[index // n],
                  lp=logprobs(planned, index // n, "", [], [], offset=0, with_echo=True))
            for index in range(len(job.rows)))
    return sse_response(job, planned.batcher, render, first=first)
