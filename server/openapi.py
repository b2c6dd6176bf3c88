"""``/openapi.json``: the OpenAPI 3.1 description, built from the pydantic models the views use.

Bodies come from :mod:`server.schemas` (so the description cannot drift from the validation), the
configured limits are written into the request schema, and ``tests/test_server_openapi.py``
validates real responses against it.
"""

from __future__ import annotations

import copy
from typing import Any

from server.openai_schemas import Completion, CompletionRequest, OpenAIErrorBody
from server.schemas import ErrorBody, GenerateRequest, GenerateResponse, Health, ModelList
from server.settings import ServerSettings
from textgen.forms import LatexForm, TangForm, form_schema

REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in (GenerateRequest, GenerateResponse, ModelList, Health, ErrorBody, CompletionRequest, Completion,
                  OpenAIErrorBody):
        schema = model.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


_COMPONENTS = _schemas()


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _error(description: str, headers: dict | None = None, body: str = "ErrorBody") -> dict[str, Any]:
    response = {"description": description, "content": _json(body)}
    if headers:
        response["headers"] = headers
    return response


ERRORS = {
    "400": _error("The body is not valid JSON, not UTF-8, or not an object."),
    "404": _error("Unknown model."),
    "413": _error("The body or the prompt is over its limit."),
    "415": _error("Content-Type is not application/json."),
    "422": _error("A field has the wrong type or is out of range (`field` names it); a form the prompt or "
                  "model cannot satisfy; a prompt the model cannot represent."),
    "429": _error("The generation queue is full.",
                  {"Retry-After": {"description": "Seconds to wait before trying again.",
                                   "schema": {"type": "string"}, "required": True}}),
    "500": _error("Generation failed unexpectedly (details are in the server log)."),
    "503": _error("The model failed to load, or the server is shutting down."),
}

# The same statuses on the OpenAI-compatible routes, in OpenAI's error shape (`param` names the field).
OPENAI_ERRORS = {
    status: _error(meta["description"], meta.get("headers"), body="OpenAIErrorBody") for status, meta in ERRORS.items()
}

STREAM_OK = {
    "description": "Server-Sent Events: `data: {\"index\", \"text\"}` as text is written, "
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
    "content": {**_json("Completion"), **STREAM_OK["content"]},
}

# The shapes of `form`, from the form dataclasses (checked by textgen.forms, which answers 422 with the field).
POEM_FORM = form_schema(TangForm, "PoemForm")
LATEX_FORM = form_schema(LatexForm, "LatexForm")


def _components(settings: ServerSettings, model_names: list[str] | None) -> dict[str, Any]:
    """The schemas, with the configured limits, the models as examples and the shapes of ``form``."""
    components = copy.deepcopy(_COMPONENTS)
    request = components["GenerateRequest"]["properties"]
    completion = components["CompletionRequest"]["properties"]
    limits = settings.limits
    request["max_new_chars"]["maximum"] = limits.max_new_chars
    request["prompt"]["maxLength"] = limits.max_prompt_chars
    completion["max_tokens"]["anyOf"][0]["maximum"] = limits.max_new_chars
    for option in completion["prompt"]["anyOf"]:
        (option if option["type"] == "string" else option["items"])["maxLength"] = limits.max_prompt_chars
    forms = {"anyOf": [{"$ref": "#/components/schemas/PoemForm"},
                       {"$ref": "#/components/schemas/LatexForm"}, {"type": "null"}],
             "default": None, "description": request["form"].get("description", "")}
    for properties in (request, completion):
        properties["form"] = forms
        if model_names:
            properties["model"]["examples"] = list(model_names)
    components["PoemForm"] = POEM_FORM
    components["LatexForm"] = LATEX_FORM
    return components


def build_spec(settings: ServerSettings, model_names: list[str] | None = None) -> dict[str, Any]:
    """The description of a server with these settings (and these models, given as examples)."""
    components = _components(settings, model_names)
    body = {"required": True, "content": _json("GenerateRequest")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "textgen", "version": "1",
                 "description": "Character-level recurrent text generation: Tang poetry, LaTeX, any corpus."},
        "paths": {
            "/health": {"get": {
                "summary": "Whether a model can be served", "operationId": "health",
                "responses": {
                    "200": {"description": "Serving.", "content": _json("Health")},
                    "503": {"description": "No model can be loaded, or the server is draining.",
                            "content": _json("Health")},
                }}},
            "/v1/models": {"get": {
                "summary": "The exported models", "operationId": "listModels",
                "responses": {"200": {"description": "Every export in the checkpoints folder.",
                                      "content": _json("ModelList")}}}},
            "/v1/models/{name}/latex": {"get": {
                "summary": "What a model's `form: latex` text compiles with", "operationId": "modelLatex",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The preamble, the document wrapper and the preamble's macros.",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["model", "preamble", "document", "macros"],
                                "properties": {"model": {"type": "string"}, "preamble": {"type": "string"},
                                               "document": {"type": "string"},
                                               "macros": {"type": "object",
                                                          "additionalProperties": {"type": "string"}}}}}}},
                    "404": ERRORS["404"], "503": ERRORS["503"]}}},
            "/v1/generate": {"post": {
                "summary": "Generate; answer when done", "operationId": "generate", "requestBody": body,
                "responses": {"200": {"description": "The samples.", "content": _json("GenerateResponse")},
                              **ERRORS}}},
            "/v1/generate/stream": {"post": {
                "summary": "Generate as a stream of Server-Sent Events", "operationId": "generateStream",
                "requestBody": body, "responses": {"200": STREAM_OK, **ERRORS}}},
            "/v1/completions": {"post": {
                "summary": "OpenAI-compatible completions (tokens are characters)", "operationId": "createCompletion",
                "requestBody": {"required": True, "content": _json("CompletionRequest")},
                "responses": {"200": COMPLETIONS_OK, **OPENAI_ERRORS}}},
            "/metrics": {"get": {
                "summary": "Prometheus metrics", "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {
                "summary": "This description", "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/": {"get": {
                "summary": "The web page", "operationId": "page",
                "responses": {"200": {"description": "HTML page to try the models.",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": components},
    }
