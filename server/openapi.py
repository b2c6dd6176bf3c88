"""``/openapi.json``: the OpenAPI 3.1 description, built from the app's own route table.

Each view declares its description beside its route (:func:`describe`); :func:`build_spec` walks
``app.url_map``, so a route added in one place appears here (and a route without a description is an
error).  Bodies come from the pydantic models the views use (:mod:`server.schemas`,
:mod:`server.openai_schemas`), so the description cannot drift from the validation; error tables are
generated from :class:`server.error_kinds.ErrorKind`; the configured limits are written into the
request schemas; ``tests/test_server_openapi.py`` validates real responses against it and fuzzes it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context

from server.auth import needs_key
from server.error_kinds import ErrorKind
from server.openai_schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    OpenAIErrorBody,
)
from server.schemas import ErrorBody, GenerateRequest, GenerateResponse, Health, ModelList
from server.settings import ServerSettings
from textgen.forms import FORM_KINDS, form_schema
from textgen.forms.tang import FORM_KIND as TANG

REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    from server.paper_schemas import SCHEMAS as PAPER_SCHEMAS
    from server.revise_schemas import SCHEMAS as REVISE_SCHEMAS
    from server.tunes_schemas import SCHEMAS as TUNES_SCHEMAS

    components: dict[str, Any] = {}
    for model in (GenerateRequest, GenerateResponse, ModelList, Health, ErrorBody, CompletionRequest, Completion,
                  ChatCompletionRequest, ChatCompletion, ChatCompletionChunk, OpenAIErrorBody, *REVISE_SCHEMAS,
                  *PAPER_SCHEMAS, *TUNES_SCHEMAS):
        schema = model.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


_COMPONENTS = _schemas()


def json_content(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    """A route's OpenAPI description, declared beside the route with :func:`describe`."""

    summary: str
    operation_id: str
    responses: dict[HTTPStatus, Any]
    """The answers that are not errors, by status."""
    request: str | None = None
    """The component schema of the JSON body, if the route takes one."""
    errors: tuple[ErrorKind, ...] = ()
    """The errors the route can answer (their statuses and descriptions come from :class:`ErrorKind`)."""
    error_body: str = "ErrorBody"
    """The component schema of its error body (the OpenAI-compatible routes answer in OpenAI's shape)."""
    parameters: tuple[dict[str, Any], ...] = ()


def describe(**operation: Any) -> Callable[[View], View]:
    """Attach the OpenAPI description of a view: ``@bp.get(...)`` above ``@describe(summary=..., ...)``."""
    declared = Operation(**operation)

    def mark(view: View) -> View:
        view.openapi = declared  # type: ignore[attr-defined]
        return view

    return mark


RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}}

GENERATION_ERRORS = (ErrorKind.BAD_JSON, ErrorKind.UNKNOWN_MODEL, ErrorKind.TOO_LARGE, ErrorKind.UNSUPPORTED_MEDIA,
                     ErrorKind.INVALID, ErrorKind.QUEUE_FULL, ErrorKind.GENERATION_FAILED,
                     ErrorKind.MODEL_UNAVAILABLE, ErrorKind.SHUTTING_DOWN, ErrorKind.CANCELLED)
"""What a generation route can answer besides its result (every one of them reads a JSON body)."""
KEY_ERRORS = (ErrorKind.UNAUTHORIZED, ErrorKind.KEY_RATE_LIMIT)
"""What every route behind the API keys can answer, when keys are set (:mod:`server.auth`)."""


def error_responses(kinds: tuple[ErrorKind, ...], body: str) -> dict[str, Any]:
    """The error table of a route: one entry per status, describing each of its kinds there."""
    by_status: dict[int, list[ErrorKind]] = {}
    for kind in dict.fromkeys(kinds):
        by_status.setdefault(kind.status, []).append(kind)
    table = {}
    for status, group in sorted(by_status.items()):
        response: dict[str, Any] = {"description": " ".join(kind.value.description for kind in group),
                                    "content": json_content(body)}
        if any(kind.value.retry_after for kind in group):
            response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": all(k.value.retry_after for k in group)}}
        table[str(status)] = response
    return table


STREAM_OK = {
    "description": "Server-Sent Events: `data: {\"index\", \"text\", \"top_logprobs\"?}` as text is written, "
                   "`data: {\"index\", \"finish_reason\", \"generated_chars\", \"logprob\"?}` per sample, "
                   "`data: {\"usage\", \"timing\"}`, then `data: [DONE]`; an error after the start is "
                   "`data: {\"error\": {...}}` then `data: [DONE]`.",
    # The schema describes each event (as OpenAPI 3.2's itemSchema does, and schemathesis reads it).
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
    }}},
}
COMPLETIONS_OK = {
    "description": "The completion; with `stream`, Server-Sent Events: `data: {completion chunk}` (the "
                   "Completion shape, `finish_reason` null until a choice's last chunk), then `data: [DONE]`; "
                   "an error after the start is `data: {\"error\": {...}}` then `data: [DONE]`.",
    "content": {**json_content("Completion"), **STREAM_OK["content"]},
}
CHAT_OK = {
    "description": "The chat completion; with `stream`, Server-Sent Events: `data: {chunk}` (the "
                   "ChatCompletionChunk shape: the role, then `delta.content` as text is written, then each "
                   "choice's `finish_reason`; a last chunk with `usage` under `stream_options.include_usage`), "
                   "then `data: [DONE]`; an error after the start is `data: {\"error\": {...}}` then `data: [DONE]`.",
    "content": {**json_content("ChatCompletion"), **STREAM_OK["content"]},
}


# The shapes of `form`, one per registered kind, from its dataclass (checked by textgen.forms, which answers
# 422 with the field): a kind added to the table of textgen.forms appears here by that alone.
FORM_SCHEMAS = {kind.schema_title: form_schema(kind) for kind in dict.fromkeys(FORM_KINDS.values())}


def _components(settings: ServerSettings, model_names: list[str] | None) -> dict[str, Any]:
    """The schemas, with the configured limits, the models as examples and the shapes of ``form``."""
    components = copy.deepcopy(_COMPONENTS)
    request = components["GenerateRequest"]["properties"]
    completion = components["CompletionRequest"]["properties"]
    chat = components["ChatCompletionRequest"]["properties"]
    limits = settings.limits
    request["max_new_chars"]["maximum"] = limits.max_new_chars
    request["prompt"]["maxLength"] = limits.max_prompt_chars
    for properties, name in ((completion, "max_tokens"), (chat, "max_tokens"), (chat, "max_completion_tokens")):
        properties[name]["anyOf"][0]["maximum"] = limits.max_new_chars
    for option in completion["prompt"]["anyOf"]:
        (option if option["type"] == "string" else option["items"])["maxLength"] = limits.max_prompt_chars
    forms = {"anyOf": [*({"$ref": f"#/components/schemas/{title}"} for title in FORM_SCHEMAS), {"type": "null"}],
             "default": None, "description": request["form"].get("description", "")}
    for properties in (request, completion, chat):
        properties["form"] = forms
        if model_names:
            properties["model"]["examples"] = list(model_names)
    components.update(copy.deepcopy(FORM_SCHEMAS))
    return components


def operations(app: Flask) -> dict[str, dict[str, Operation]]:
    """The description of every route of ``app``, from its own route table (path -> method -> operation).

    A route without :func:`describe` is an error: a route added in one place appears in ``/openapi.json``."""
    paths: dict[str, dict[str, Operation]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        declared = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if declared is None:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) has no OpenAPI description (server.openapi.describe)")
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = declared
    return paths


def build_spec(settings: ServerSettings, model_names: list[str] | None = None, *, app: Flask | None = None,
               keys_required: bool = False) -> dict[str, Any]:
    """The description of ``app``'s routes under these settings (and these models, given as examples);
    with ``keys_required`` the routes behind the API keys say so, and answer 401 and 429.  Without
    ``app``: the current app's, or (outside a request) those of an app built with ``settings``."""
    if app is None:
        if has_app_context():
            app = current_app
        else:
            from server import create_app

            app = create_app({"TESTING": True, **settings.model_dump(mode="json")})
    components = _components(settings, model_names)
    components["ReviseRequest"]["properties"]["form"] = {"$ref": f"#/components/schemas/{TANG.schema_title}"}
    paths: dict[str, Any] = {}
    for path, methods in operations(app).items():
        for method, declared in methods.items():
            keyed = keys_required and needs_key(path, settings)
            kinds = declared.errors + (KEY_ERRORS if keyed else ())
            operation: dict[str, Any] = {
                "summary": declared.summary, "operationId": declared.operation_id,
                "responses": {**{str(int(status)): answer for status, answer in declared.responses.items()},
                              **error_responses(kinds, declared.error_body)},
            }
            if declared.parameters:
                operation["parameters"] = list(declared.parameters)
            if declared.request:
                operation["requestBody"] = {"required": True, "content": json_content(declared.request)}
            if keyed:
                operation["security"] = [{"apiKey": []}]
            paths.setdefault(path, {})[method] = operation
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "textgen", "version": "1",
                 "description": "Character-level recurrent text generation: Tang poetry, LaTeX, any corpus."},
        "paths": paths,
        "components": {"schemas": components},
    }
    if keys_required:
        spec["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    return spec
