"""``/openapi.json`` is kept true: real responses validate against it, and a fuzzer finds no 5xx.

Statuses and shapes only: the server holds the untrained exports (``contract_exports``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from jsonschema import Draft202012Validator
from live_server import LiveServer
from openapi_spec_validator import validate as validate_spec
from server_fixtures import CONTRACT_MODELS

ENGLISH, VERSE = CONTRACT_MODELS


def check_against_spec(spec: dict, method: str, path: str, response: requests.Response) -> None:
    """The response's status, media type and JSON body are what the description says."""
    operation = spec["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: status {status} is not described"
    described = operation["responses"][status]
    media = response.headers["Content-Type"].split(";")[0]
    assert media in described["content"], f"{method} {path} {status}: {media} is not described"
    for header, meta in described.get("headers", {}).items():
        if meta.get("required"):
            assert header in response.headers
    if media == "application/json":
        schema = {**described["content"][media]["schema"], "components": spec["components"]}
        Draft202012Validator(schema).validate(response.json())


def test_the_description_is_valid_openapi(contract):
    spec = contract.get("/openapi.json").json()
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1")
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in contract.app.url_map.iter_rules()
              if rule.endpoint != "static"}
    assert set(spec["paths"]) == routes  # every route of the app's own table, and nothing else
    assert {"/v1/chat/completions", "/v1/poems/revise"} <= routes
    for path in ("/v1/generate", "/v1/generate/stream", "/v1/completions", "/v1/chat/completions", "/v1/poems/revise"):
        assert {"200", "400", "404", "413", "415", "422", "429", "500", "503"} <= set(
            spec["paths"][path]["post"]["responses"])
        assert "401" not in spec["paths"][path]["post"]["responses"]  # no keys on this server
    request = spec["components"]["schemas"]["GenerateRequest"]
    assert request["required"] == ["model"]
    assert request["properties"]["max_new_chars"]["maximum"] == 20000  # the configured limit
    assert request["properties"]["model"]["examples"] == sorted(CONTRACT_MODELS)
    completion = spec["components"]["schemas"]["CompletionRequest"]["properties"]
    assert completion["max_tokens"]["default"] == request["properties"]["max_new_chars"]["default"]  # one default
    assert completion["max_tokens"]["anyOf"][0]["maximum"] == 20000
    assert {"top_k", "repetition_penalty", "form", "best_of", "logprobs", "echo", "user"} <= set(completion)


def test_real_responses_match_the_description(contract):
    spec = contract.get("/openapi.json").json()
    calls = [
        ("GET", "/health", None),
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/", None),
        ("POST", "/v1/generate", {"model": VERSE, "max_new_chars": 20, "n": 2}),
        ("POST", "/v1/generate", {"model": ENGLISH, "max_new_chars": 20, "return_logprobs": True,
                                  "stop": ["e"]}),
        ("POST", "/v1/generate/stream", {"model": ENGLISH, "max_new_chars": 5}),
        ("POST", "/v1/generate", b"{nope"),
        ("POST", "/v1/generate", {"model": "nope"}),
        ("POST", "/v1/generate", {"model": VERSE, "prompt": "x" * 5000}),
        ("POST", "/v1/generate", "text/plain"),
        ("POST", "/v1/generate/stream", {"model": VERSE, "temperature": -1}),
        ("POST", "/v1/generate", {"model": "broken"}),
        ("POST", "/v1/completions", {"model": VERSE, "prompt": ["春", "月"], "max_tokens": 8, "n": 2, "logprobs": 2,
                                     "echo": True, "best_of": 3}),
        ("POST", "/v1/completions", {"model": VERSE, "max_tokens": 4, "stream": True}),
        ("POST", "/v1/completions", {"model": "nope"}),
        ("POST", "/v1/completions", {"model": VERSE, "top_p": 2}),
        ("POST", "/v1/completions", {"model": VERSE, "stream": True, "best_of": 2}),
        ("POST", "/v1/completions", {"model": "broken"}),
        ("POST", "/v1/completions", b"[1]"),
        ("POST", "/v1/completions", {"model": VERSE, "max_tokens": 4, "min_p": 0.1}),
        ("POST", "/v1/chat/completions", {"model": VERSE, "messages": [{"role": "user", "content": "春"}],
                                          "max_tokens": 6, "n": 2, "logprobs": True, "top_logprobs": 2}),
        ("POST", "/v1/chat/completions", {"model": VERSE, "messages": [{"role": "user", "content": "写一首五言绝句"}],
                                          "seed": 1}),
        ("POST", "/v1/chat/completions", {"model": VERSE, "messages": [{"role": "user", "content": "春"}],
                                          "max_tokens": 4, "stream": True}),
        ("POST", "/v1/chat/completions", {"model": VERSE, "messages": []}),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "春"}]}),
    ]
    for method, path, body in calls:
        if body is None:
            response = requests.request(method, contract.url + path, timeout=60)
        elif body == "text/plain":
            response = requests.post(contract.url + path, data=b"{}", headers={"Content-Type": "text/plain"}, timeout=60)
        elif isinstance(body, bytes):
            response = requests.post(contract.url + path, data=body, headers={"Content-Type": "application/json"},
                                     timeout=60)
        else:
            response = requests.post(contract.url + path, json=body, timeout=60)
        check_against_spec(spec, method, path, response)
    form = {"kind": "jueju", "chars_per_line": 5}
    poem = contract.post("/v1/generate", {"model": VERSE, "form": form, "seed": 1}).json()["samples"][0]["text"]
    for body in ({"model": VERSE, "form": form, "poem": poem, "verse": 2, "n": 2, "seed": 1},
                 {"model": VERSE, "form": form, "poem": poem, "verse": 7}, {"model": "nope", "form": form,
                                                                            "poem": poem, "verse": 1}):
        check_against_spec(spec, "POST", "/v1/poems/revise", contract.post("/v1/poems/revise", body))
    # a 503 /health (draining) is described too
    contract.state.draining.set()
    try:
        check_against_spec(spec, "GET", "/health", contract.get("/health"))
        check_against_spec(spec, "POST", "/v1/generate", contract.post("/v1/generate", {"model": VERSE}))
    finally:
        contract.state.draining.clear()


CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


def test_fuzz_with_schemathesis(contract_exports, tmp_path):
    """Schemathesis against /openapi.json: no 5xx, every status, media type and body as described."""
    server = LiveServer({"checkpoints": contract_exports,
                         "limits": {"max_new_chars": 20, "max_prompt_chars": 200},
                         "batching": {"queue_length": 64}})
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()", "run",
             server.url + "/openapi.json", "--checks", CHECKS, "--max-examples", "30", "--seed", "1",
             "--generation-database", "none", "--request-timeout", "60", "--no-color", "--workers", "2"],
            check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its caches stay out of the repo
        )
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    finally:
        server.close()


def test_a_route_appears_in_the_description_from_its_own_declaration(contract_exports):
    """build_spec reads the app's route table: a described route appears, an undescribed one is an error."""
    from server import create_app
    from server.error_kinds import ErrorKind
    from server.openapi import build_spec, describe, operations

    app = create_app({"TESTING": True, "checkpoints": contract_exports})
    try:
        app.add_url_rule("/v1/echo", "echo", describe(summary="Echo", operation_id="echo", responses={
            200: {"description": "ok"}}, errors=(ErrorKind.INVALID,))(lambda: "x"), methods=["POST"])
        spec = build_spec(app.extensions["textgen"].settings, app=app)
        assert set(spec["paths"]["/v1/echo"]["post"]["responses"]) == {"200", "422"}
        app.add_url_rule("/v1/bare", "bare", lambda: "x")
        with pytest.raises(RuntimeError, match="/v1/bare"):
            operations(app)
    finally:
        app.extensions["textgen"].registry.close()
