"""API keys (:mod:`server.auth`): the official ``openai`` client, plain HTTP, and the page in Chromium."""

from __future__ import annotations

import logging

import openai
import pytest
import requests
from live_server import LiveServer
from server_fixtures import CONTRACT_MODELS
from test_server_openai import client_for
from test_server_page import CHROMIUM_MISSING, launch_chromium

from server import create_app
from server.auth import read_keys

ENGLISH, VERSE = CONTRACT_MODELS
KEYS = ("sk-first-key", "sk-second-key")


@pytest.fixture(scope="module")
def keyed(contract_exports):
    server = LiveServer({"checkpoints": contract_exports, "auth": {"api_keys": ",".join(KEYS)}})
    yield server
    server.close()


def chat(client: openai.OpenAI):
    return client.chat.completions.create(model=VERSE, messages=[{"role": "user", "content": "春"}], max_tokens=3)


def test_the_client_needs_a_key_the_server_knows(keyed):
    with pytest.raises(openai.AuthenticationError) as error:
        chat(client_for(keyed, api_key="sk-wrong"))
    assert error.value.status_code == 401 and error.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client_for(keyed, api_key="sk-wrong").completions.create(model=VERSE, prompt="春", max_tokens=3)
    with pytest.raises(openai.AuthenticationError):
        client_for(keyed, api_key="sk-wrong").models.list()
    for key in KEYS:
        assert len(chat(client_for(keyed, api_key=key)).choices[0].message.content) == 3
        completion = client_for(keyed, api_key=key).completions.create(model=VERSE, prompt="春", max_tokens=3)
        assert len(completion.choices[0].text) == 3


def test_a_missing_key_is_a_401_in_each_route_s_shape(keyed):
    native = requests.post(keyed.url + "/v1/generate", json={"model": VERSE}, timeout=30)
    assert native.status_code == 401 and native.json()["error"]["code"] == "unauthorized"
    assert native.headers["WWW-Authenticate"].startswith("Bearer")
    chat_answer = requests.post(keyed.url + "/v1/chat/completions", json={"model": VERSE}, timeout=30)
    assert chat_answer.status_code == 401
    assert chat_answer.json()["error"]["type"] == "invalid_request_error"
    assert chat_answer.json()["error"]["code"] == "invalid_api_key"
    for scheme in ("Basic " + KEYS[0], KEYS[0], "Bearer", "Bearer " + KEYS[0] + "x"):
        refused = requests.get(keyed.url + "/v1/models", headers={"Authorization": scheme}, timeout=30)
        assert refused.status_code == 401, scheme
    accepted = requests.get(keyed.url + "/v1/models", headers={"Authorization": f"bearer {KEYS[1]}"}, timeout=30)
    assert accepted.status_code == 200


def test_health_the_page_and_metrics_stay_open(keyed, contract_exports):
    for path in ("/health", "/", "/metrics", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path
    closed = create_app({"TESTING": True, "checkpoints": contract_exports,
                         "auth": {"api_keys": KEYS[0], "metrics_need_key": True}}).test_client()
    try:
        assert closed.get("/metrics").status_code == 401
        assert closed.get("/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 200
        assert closed.get("/health").status_code == 200
    finally:
        closed.application.extensions["textgen"].registry.close()


def test_the_description_says_which_routes_need_a_key(keyed):
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    chat_route = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat_route["security"] == [{"apiKey": []}] and {"401", "429"} <= set(chat_route["responses"])
    assert "security" not in spec["paths"]["/health"]["get"] and "401" not in spec["paths"]["/health"]["get"]["responses"]


def test_keys_are_never_logged(keyed, caplog):
    with caplog.at_level(logging.DEBUG):
        requests.get(keyed.url + "/v1/models", headers={"Authorization": "Bearer sk-a-secret-guess"}, timeout=30)
        requests.get(keyed.url + "/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sk-a-secret-guess" not in logged and KEYS[0] not in logged


def test_keys_from_a_file(tmp_path, contract_exports):
    keys = tmp_path / "keys.txt"
    keys.write_text("# textgen keys\nsk-from-file\n\n  sk-other  \n", encoding="utf-8")
    assert read_keys(f"@{keys}") == ("sk-from-file", "sk-other")
    assert read_keys(" a, b ,,a ") == ("a", "b")
    assert read_keys("") == ()
    with pytest.raises(ValueError, match="cannot read the key file"):
        read_keys(f"@{tmp_path / 'missing.txt'}")
    server = LiveServer({"checkpoints": contract_exports, "auth": {"api_keys": f"@{keys}"}})
    try:
        assert len(chat(client_for(server, api_key="sk-other")).choices) == 1
        with pytest.raises(openai.AuthenticationError):
            chat(client_for(server, api_key="sk-wrong"))
    finally:
        server.close()


def test_a_key_over_its_rate_is_answered_429_with_retry_after(contract_exports):
    server = LiveServer({"checkpoints": contract_exports, "auth": {"api_keys": ",".join(KEYS),
                                                                   "requests_per_minute": 2}})
    try:
        client = client_for(server, api_key=KEYS[0])
        chat(client)
        chat(client)
        with pytest.raises(openai.RateLimitError) as error:
            chat(client)
        assert 1 <= int(error.value.response.headers["Retry-After"]) <= 60
        assert error.value.code == "rate_limit_exceeded"
        assert len(chat(client_for(server, api_key=KEYS[1])).choices) == 1  # each key has its own count
    finally:
        server.close()


def test_without_keys_nothing_changes(contract):
    assert contract.get("/v1/models").status_code == 200
    assert len(chat(client_for(contract, api_key="anything")).choices) == 1


@pytest.mark.skipif(CHROMIUM_MISSING, reason="no Chromium")
def test_the_page_asks_for_a_key_once_and_keeps_it_for_the_tab(keyed):
    with launch_chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(keyed.url + "/")
        page.wait_for_selector("#api-key-dialog[open]")  # the model list was refused: the page asks
        page.fill("#api-key", "sk-wrong")
        page.click("#api-key-ok")
        page.wait_for_function("document.querySelector('#api-key-dialog p') && document.querySelector("
                               "'#api-key-dialog p').textContent.includes('did not accept')")
        page.fill("#api-key", KEYS[1])
        page.click("#api-key-ok")
        page.wait_for_function("document.querySelectorAll('#model option').length === 2")
        assert page.evaluate("sessionStorage.getItem('textgen.apiKey')") == KEYS[1]
        page.select_option("#model", VERSE)
        page.fill("#max_new_chars", "12")
        page.click("#generate")
        page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                               timeout=60_000)
        assert page.locator("#api-key-dialog").count() == 0  # asked once: the stream used the kept key
        page.reload()  # the same tab keeps its key: no question
        page.wait_for_function("document.querySelectorAll('#model option').length === 2")
        assert page.locator("#api-key-dialog").count() == 0
        other = browser.new_page()  # another tab starts without it
        other.goto(keyed.url + "/")
        other.wait_for_selector("#api-key-dialog[open]")
        assert errors == []
