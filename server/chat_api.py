"""``POST /v1/chat/completions``: OpenAI's chat API over the same batcher, registry and sampler.

A character model has no chat template: **the conversation's text is its prompt, and the answer
continues it.**  The rule (:func:`conversation_prompt`): the contents of the ``user`` and
``assistant`` messages, in order, joined by one line break; ``system`` and ``developer`` messages
are left out (a character model follows no instructions, and their words would only steer it off
its corpus).  The answer continues the last message directly, so an ``assistant`` message last is
a beginning the model goes on with.

A poetry model reads a request for a form in words: when the request has no ``form`` and the last
message is the user's, :func:`textgen.forms.wording.parse_form_request` reads it
(``写一首七言绝句，题为春日，藏头春夏秋冬``, or a tune the model can write a ci to:
``填一首鹧鸪天，题为春晚``); when it names a form the model can write, the answer is that poem (the
title line, and a ci's tune line, are the prompt; the earlier messages are not read).  The answer's
``textgen`` field says what the model read and which form it followed.  A request naming no form,
or a model that writes no Chinese verse, is a plain continuation.

Errors answer in OpenAI's shape, with ``param`` in the chat request's names.
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
from server.batching import Batcher, DoneEvent, ErrorEvent, FinishEvent, Job, JobEvent, PromptRows, TextEvent
from server.errors import APIError
from server.openai_api import FINISH_REASONS, openai_error_body
from server.openai_schemas import ChatCompletion, ChatCompletionRequest, ChatMessage
from server.openapi import CHAT_OK, GENERATION_ERRORS, describe
from textgen.export import LoadedModel
from textgen.forms import FormError, form_keys
from textgen.forms.ci import writable_tunes
from textgen.forms.tang import TangForm
from textgen.forms.wording import FormRequest, parse_form_request
from textgen.sampling import SamplingParams, select_best

bp = Blueprint("chat", __name__)
ROUTE = "chat"
READ_ROLES = ("user", "assistant")
"""The roles whose text the model reads."""


def _chat_error_body(error: APIError) -> dict[str, Any]:
    return openai_error_body(error, ROUTE)


errors.register_shape(bp.name, _chat_error_body, paths=("/v1/chat/completions",))


def conversation_prompt(messages: list[ChatMessage]) -> str:
    """The text a character model reads for a conversation: user and assistant messages, one a line."""
    return "\n".join(message.text() for message in messages if message.role in READ_ROLES)


@dataclass
class PlannedChat:
    """A validated chat request, queued as one job of ``params.candidates`` rows."""

    request: ChatCompletionRequest
    params: SamplingParams
    batcher: Batcher
    part: PromptRows
    form: dict[str, Any] | None
    asked: FormRequest | None
    job: Job
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def understood(self) -> dict[str, Any]:
        """The answer's ``textgen`` field."""
        info: dict[str, Any] = {"prompt": self.part.read, "form": self.form}
        if self.asked is not None:
            info.update(understood=self.asked.understood, ignored=self.asked.ignored, notes=self.asked.notes)
        return info


def tunes_in_words(loaded: LoadedModel) -> dict[str, dict[str, str]]:
    """The ``tunes`` table of :func:`parse_form_request` for ``loaded``: each tune it can write a ci to,
    the longest names first (摊破浣溪沙 is read before 浣溪沙)."""
    names = sorted((tune.name for tune in writable_tunes(loaded)), key=len, reverse=True)
    return {name: {"kind": "ci", "tune": name} for name in names}


def _asked_form(req: ChatCompletionRequest, batcher: Batcher, params: SamplingParams) -> tuple[
        PromptRows, FormRequest] | None:
    """The rows of the form the last user message asks for in words, or None (no form, or a model that
    writes no Chinese verse).  A form it cannot write otherwise (a head outside its vocabulary) is a 422."""
    last = req.messages[-1]
    if req.form is not None or last.role != "user":
        return None
    asked = parse_form_request(last.text(), form_fields=form_keys(TangForm), tunes=tunes_in_words(batcher.loaded))
    if asked is None:
        return None
    try:
        return batcher.prepare("", params, asked.form), asked
    except FormError as error:
        if error.field == "form.kind":  # the model writes no verse: continue the text instead
            return None
        raise FormError(error.field, f"{error} (read from the request in words: {'; '.join(asked.understood)})") \
            from error


def plan() -> PlannedChat:
    """Validate the request and queue its rows (every error is raised before any text is sent)."""
    req = ChatCompletionRequest.model_validate(read_json_object())
    params = req.params()
    prompt = conversation_prompt(req.messages)
    length_field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    check_limits(prompt, params.max_new_chars, length_field=length_field)
    if req.stream:
        refuse_ranked_stream(params)
    batcher = model_batcher(req.model)
    from_words = _asked_form(req, batcher, params)
    if from_words is not None:
        part, asked = from_words
        form = asked.form
    else:
        part, asked, form = batcher.prepare(prompt, params, req.form), None, req.form
    return PlannedChat(req, params, batcher, part, form, asked, batcher.submit([part], stream=req.stream))


@bp.post("/v1/chat/completions")
@describe(summary="OpenAI-compatible chat completions (the conversation's text is the prompt; tokens are "
                  "characters)", operation_id="createChatCompletion", request="ChatCompletionRequest",
          responses={HTTPStatus.OK: CHAT_OK}, errors=GENERATION_ERRORS, error_body="OpenAIErrorBody")
def chat_completions() -> Response:
    """OpenAI's chat completions: the whole answer, or (``stream``) chunks as Server-Sent Events."""
    planned = plan()
    if planned.request.stream:
        return stream(planned)
    wait_for(planned.job, planned.batcher)
    return jsonify(answer(planned))


def answer(planned: PlannedChat) -> dict[str, Any]:
    """The chat completion: ``n`` choices (the best first under ``best_of``)."""
    params, job = planned.params, planned.job
    candidates = [job.samples[i] for i in range(params.candidates)]
    kept = select_best(candidates, params.n) if params.candidates > params.n else candidates
    choices = [{"index": index, "message": {"role": "assistant", "content": planned.part.echo + sample.text},
                "finish_reason": FINISH_REASONS[sample.finish_reason],
                "logprobs": logprobs(planned, sample.text, sample.char_logprobs, sample.top_logprobs)}
               for index, sample in enumerate(kept)]
    body = {"id": planned.id, "object": "chat.completion", "created": planned.created,
            "model": planned.request.model, "choices": choices, "usage": usage(planned),
            "textgen": planned.understood()}
    return ChatCompletion.model_validate(body).model_dump()


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def logprobs(planned: PlannedChat, text: str, values: list[float] | None,
             top: list[dict[str, float]] | None) -> dict[str, Any] | None:
    """OpenAI's chat ``logprobs``: per character of ``text``, its log-probability and its top characters."""
    if not planned.params.return_logprobs:
        return None
    tops = list(top) if top is not None and planned.params.top_logprobs else [{} for _ in text]
    content = [{**_entry(char, value), "top_logprobs": [_entry(t, v) for t, v in alternatives.items()]}
               for char, value, alternatives in zip(text, values or [], tops)]
    return {"content": content, "refusal": None}


def usage(planned: PlannedChat) -> dict[str, int]:
    """Characters read and written; every candidate's characters count."""
    prompt = len(planned.part.read)
    completion = sum(s.generated_chars for s in planned.job.samples.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def stream(planned: PlannedChat) -> Response:
    """Chat chunks: each choice's role (with ``textgen``), its text as it is written, its finish, [DONE]."""
    req, job = planned.request, planned.job

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return sse_data({"id": planned.id, "object": "chat.completion.chunk", "created": planned.created,
                      "model": req.model, "choices": choices, **extra})

    def render(event: JobEvent) -> str:
        match event:
            case TextEvent(index, text, _, values, top):
                return chunk([{"index": index, "delta": {"content": text}, "finish_reason": None,
                               "logprobs": logprobs(planned, text, values, top)}])
            case FinishEvent(index, sample):
                return chunk([{"index": index, "delta": {}, "finish_reason": FINISH_REASONS[sample.finish_reason]}])
            case ErrorEvent():
                return sse_data(_chat_error_body(job_error(job))) + "data: [DONE]\n\n"
            case DoneEvent():
                last = ""
                if req.stream_options is not None and req.stream_options.include_usage:
                    last = chunk([], usage=usage(planned))
                return last + "data: [DONE]\n\n"

    first = "".join(chunk([{"index": index, "delta": {"role": "assistant", "content": planned.part.echo},
                            "finish_reason": None}], textgen=planned.understood())
                    for index in range(len(job.rows)))
    return sse_response(job, planned.batcher, render, first=first)

