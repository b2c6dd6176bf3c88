"""The REST server over real HTTP: every endpoint and every error status of the contract."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from live_server import LiveServer, parse_sse
from server_fixtures import CONTRACT_MODELS, MODELS

from server import create_app

SHAKESPEARE, TANG = MODELS
ENGLISH, VERSE = CONTRACT_MODELS  # untrained: the contract tests (statuses and shapes) need no trained weights


# --------------------------------------------------------------------------- plain endpoints
def test_health_counts_the_loadable_models(live):
    response = live.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": 2}


def test_models_lists_every_export_without_the_broken_one(live):
    models = live.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == sorted(MODELS)
    tang = next(m for m in models if m["name"] == TANG)
    assert tang["corpus"] == "tang" and tang["cell"] == "gru"
    assert tang["encoder"] == {"layers": 1, "hidden": 48}
    assert tang["vocab_size"] > 1000 and tang["params"] > 10_000
    assert isinstance(tang["val_bpc"], float) and tang["created"]


def test_page_is_served(live):
    response = live.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "/v1/generate/stream" in response.text


# --------------------------------------------------------------------------- generation
def test_generate_answers_samples_usage_and_timing(live):
    response = live.post("/v1/generate", {"model": SHAKESPEARE, "prompt": "ROMEO:\n", "max_new_chars": 40,
                                          "n": 3, "seed": 1, "return_logprobs": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == SHAKESPEARE
    assert len(body["samples"]) == 3
    for sample in body["samples"]:
        assert len(sample["text"]) == 40 and sample["finish_reason"] == "length"
        assert sample["logprob"] < 0
    assert body["usage"] == {"prompt_chars": 7, "generated_chars": 120}
    assert body["timing"]["queue_ms"] >= 0 and body["timing"]["generate_ms"] > 0
    assert len({s["text"] for s in body["samples"]}) == 3  # n samples are independent


def test_defaults_and_no_logprob_unless_asked(live):
    body = live.post("/v1/generate", {"model": TANG}).json()
    assert len(body["samples"]) == 1
    assert body["samples"][0]["finish_reason"] == "length"
    assert "logprob" not in body["samples"][0]
    assert len(body["samples"][0]["text"]) == 200


def test_seeded_and_greedy_requests_repeat(live):
    request = {"model": TANG, "prompt": "春", "max_new_chars": 30, "seed": 7, "temperature": 1.0,
               "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.3}
    first = live.post("/v1/generate", request).json()["samples"][0]["text"]
    assert live.post("/v1/generate", request).json()["samples"][0]["text"] == first
    greedy = {"model": TANG, "prompt": "春", "max_new_chars": 30, "temperature": 0}
    assert (live.post("/v1/generate", greedy).json()["samples"][0]["text"]
            == live.post("/v1/generate", greedy).json()["samples"][0]["text"])


def greedy_stop(live, prompt: str) -> tuple[dict, str, str]:
    """A greedy request, and a stop string its text contains (from its 20th character)."""
    request = {"model": SHAKESPEARE, "prompt": prompt, "max_new_chars": 60, "temperature": 0}
    text = live.post("/v1/generate", request).json()["samples"][0]["text"]
    stop = text[20:23]
    return {**request, "stop": ["zzzz", stop]}, text[: text.index(stop)], stop


def test_stop_strings_end_the_text_before_them(live):
    request, expected, _ = greedy_stop(live, "KING:\n")
    sample = live.post("/v1/generate", request).json()["samples"][0]
    assert sample == {"text": expected, "finish_reason": "stop"}


def test_zero_characters(live):
    body = live.post("/v1/generate", {"model": SHAKESPEARE, "max_new_chars": 0, "n": 2}).json()
    assert [s["text"] for s in body["samples"]] == ["", ""]
    assert body["usage"]["generated_chars"] == 0


def test_seeded_request_gives_the_same_text_alone_and_batched(live):
    seeded = {"model": TANG, "prompt": "月", "max_new_chars": 60, "seed": 1234, "temperature": 0.9, "top_p": 0.95}
    alone = live.post("/v1/generate", seeded).json()["samples"][0]["text"]
    batched_before = live.metric("textgen_batch_size_count", model=TANG)
    ones_before = live.metric("textgen_batch_size_bucket", model=TANG, le="1.0")
    others = [{"model": TANG, "prompt": p, "max_new_chars": 40 + 7 * i, "temperature": 0.5 + 0.1 * i,
               "top_k": i, "repetition_penalty": 1.0 + 0.05 * i, "stop": ["。"] if i % 2 else []}
              for i, p in enumerate("春夏秋冬山水风花")]
    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(live.post, "/v1/generate", body) for body in others]
        mine = pool.submit(live.post, "/v1/generate", seeded)
        results = [f.result() for f in futures]
        batched = mine.result().json()["samples"][0]["text"]
    assert all(r.status_code == 200 for r in results)
    assert batched == alone
    steps = live.metric("textgen_batch_size_count", model=TANG) - batched_before
    single = live.metric("textgen_batch_size_bucket", model=TANG, le="1.0") - ones_before
    assert steps > 0 and single < steps  # the requests really shared steps


def test_stream_sends_text_finish_and_done(live):
    request = {"model": SHAKESPEARE, "prompt": "To be", "max_new_chars": 50, "seed": 3, "n": 2,
               "return_logprobs": True}
    events = live.stream(request)
    assert events[-1] == "[DONE]"
    texts = {0: "", 1: ""}
    finishes = {}
    for event in events[:-1]:
        if "text" in event:
            texts[event["index"]] += event["text"]
        elif "finish_reason" in event:
            finishes[event["index"]] = event
    assert events[-2]["usage"] == {"prompt_chars": 5, "generated_chars": 100}
    assert set(finishes) == {0, 1} and all(f["finish_reason"] == "length" for f in finishes.values())
    whole = live.post("/v1/generate", request).json()["samples"]
    assert [texts[0], texts[1]] == [s["text"] for s in whole]
    assert [finishes[0]["logprob"], finishes[1]["logprob"]] == pytest.approx([s["logprob"] for s in whole])


def test_stream_holds_back_a_stop_string(live):
    request, expected, stop = greedy_stop(live, "QUEEN:\n")
    events = live.stream(request)
    text = "".join(e["text"] for e in events if isinstance(e, dict) and "text" in e)
    assert text == expected and stop not in text
    assert any(isinstance(e, dict) and e.get("finish_reason") == "stop" for e in events)


def test_client_disconnect_frees_its_row(live):
    """A stream whose client goes away must leave the batch (checked over a raw socket)."""
    body = json.dumps({"model": SHAKESPEARE, "max_new_chars": 2000, "n": 2}).encode()
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    sock.sendall(b"POST /v1/generate/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    received = b""
    while received.count(b"data: ") < 5:
        received += sock.recv(4096)
    assert received.startswith(b"HTTP/1.1 200")
    assert live.metric("textgen_active_rows", model=SHAKESPEARE) == 2
    sock.close()
    deadline = time.monotonic() + 20
    while live.metric("textgen_active_rows", model=SHAKESPEARE) != 0:
        assert time.monotonic() < deadline, "the rows of a disconnected stream were not freed"
        time.sleep(0.05)
    assert not live.state.registry.busy()
    # it stopped early: far fewer than 2 x 2000 characters were generated for it
    assert live.get("/health").status_code == 200


def test_metrics_report_requests_latency_characters_queue_and_batch(live):
    live.post("/v1/generate", {"model": SHAKESPEARE, "max_new_chars": 10})
    live.get("/nowhere")
    text = live.get("/metrics").text
    assert 'textgen_requests_total{endpoint="/v1/generate",method="POST",status="200"}' in text
    assert 'textgen_requests_total{endpoint="<unmatched>",method="GET",status="404"}' in text
    assert 'textgen_request_latency_seconds_bucket{endpoint="/v1/generate"' in text
    assert f'textgen_generated_chars_total{{model="{SHAKESPEARE}"}}' in text
    assert f'textgen_queue_depth{{model="{SHAKESPEARE}"}}' in text
    assert f'textgen_batch_size_bucket{{le="1.0",model="{SHAKESPEARE}"}}' in text
    # the request's row read its context once (10 characters: no re-read)
    assert live.metric("textgen_encoder_rows_count", model=SHAKESPEARE) >= 1
    assert live.metric("textgen_encoder_seconds_total", model=SHAKESPEARE) > 0


# --------------------------------------------------------------------------- errors
def assert_error(response: requests.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "field"} and error["code"] and error["message"]
    assert "Traceback" not in response.text
    if field is not None:
        assert error.get("field") == field, error
    return error


def raw_post(server, path: str, data: str | bytes, content_type: str | None = "application/json"
             ) -> requests.Response:
    """POST ``data`` as it is (a str as UTF-8) with that Content-Type (none for None)."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = data.encode() if isinstance(data, str) else data
    return requests.post(server.url + path, data=body, headers=headers, timeout=60)


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/generate/stream"])
def test_400_for_bodies_that_are_not_a_utf8_json_object(contract, path):
    assert_error(raw_post(contract, path, b"{not json"), 400)
    assert_error(raw_post(contract, path, b'{"model": "%s", "prompt": "\xff\xfe"}' % VERSE.encode()), 400)
    assert_error(raw_post(contract, path, f'["{VERSE}"]'), 400)
    assert_error(raw_post(contract, path, f'{{"model": "{VERSE}", "temperature": NaN}}'), 400)
    assert_error(raw_post(contract, path, f'{{"model": "{VERSE}", "stop": ["\\ud800"]}}'), 400)
    assert_error(raw_post(contract, path, b""), 400)


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/generate/stream"])
def test_404_for_unknown_models_and_paths(contract, path):
    for name in ("no-such-model", f"../{VERSE}", f"{VERSE}/../{VERSE}", "/etc", "."):
        assert_error(contract.post(path, {"model": name}), 404, "model")
    assert_error(contract.get("/v2/nothing"), 404)
    assert_error(contract.post("/v1/generate/", {"model": VERSE}), 404)


def test_405_for_wrong_methods(contract):
    assert_error(contract.get("/v1/generate"), 405)
    assert "POST" in contract.get("/v1/generate/stream").headers["Allow"]
    assert_error(requests.delete(contract.url + "/v1/models", timeout=30), 405)
    assert_error(contract.post("/health", {}), 405)


def test_413_for_bodies_and_prompts_over_the_limit(contract):
    assert_error(contract.post("/v1/generate", {"model": VERSE, "prompt": "x" * 5000}), 413)  # body > 4096 bytes
    assert_error(contract.post("/v1/generate", {"model": VERSE, "prompt": "春" * 513}), 413, "prompt")
    assert_error(contract.post("/v1/generate/stream", {"model": VERSE, "prompt": "春" * 513}), 413, "prompt")


def test_415_unless_json(contract):
    body = f'{{"model": "{VERSE}"}}'
    assert_error(raw_post(contract, "/v1/generate", body, "text/plain"), 415)
    assert_error(raw_post(contract, "/v1/generate", body, None), 415)
    assert_error(raw_post(contract, "/v1/generate/stream", f"model={VERSE}", "application/x-www-form-urlencoded"), 415)
    assert_error(raw_post(contract, "/v1/generate", body, "application/json; charset=latin-1"), 415)


@pytest.mark.parametrize(("fields", "field"), [
    ({}, "model"),
    ({"model": 3}, "model"),
    ({"prompt": 1}, "prompt"),
    ({"max_new_chars": -1}, "max_new_chars"),
    ({"max_new_chars": 20001}, "max_new_chars"),
    ({"max_new_chars": 10.0}, "max_new_chars"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"seed": -5}, "seed"),
    ({"seed": "x"}, "seed"),
    ({"stop": "\n"}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"stop": ["a"] * 9}, "stop"),
    ({"n": 0}, "n"),
    ({"n": 17}, "n"),
    ({"form": "jueju"}, "form"),
    ({"return_logprobs": "yes"}, "return_logprobs"),
    ({"n": 3, "best_of": 2}, "best_of"),
    ({"best_of": 0}, "best_of"),
    ({"logit_bias": {}}, "logit_bias"),
])
def test_422_names_the_field(contract, fields, field):
    body = {"model": ENGLISH, **fields} if field != "model" else fields
    error = assert_error(contract.post("/v1/generate", body), 422, field)
    assert field in error["message"]
    assert_error(contract.post("/v1/generate/stream", body), 422, field)


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/generate/stream"])
def test_422_for_a_prompt_the_model_cannot_represent(contract, path):
    # Byte fallback represents every Unicode character; a lone surrogate is none.
    error = assert_error(raw_post(contract, path, f'{{"model": "{VERSE}", "prompt": "\\ud800"}}'), 422, "prompt")
    assert "U+D800" in error["message"]


def test_429_with_retry_after_when_the_queue_is_full(contract_exports):
    server = LiveServer({"checkpoints": contract_exports,
                         "batching": {"max_batch_size": 1, "max_wait_ms": 0, "queue_length": 1},
                         "limits": {"max_new_chars": 1_000_000}})
    try:
        long = {"model": ENGLISH, "max_new_chars": 1_000_000}
        with requests.post(server.url + "/v1/generate/stream", json=long, stream=True, timeout=60) as running:
            assert running.status_code == 200
            chunks = running.iter_content(1)  # (dropping this iterator would close the connection)
            next(chunks)  # it holds the one row of the batch
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(server.post, "/v1/generate", {**long, "max_new_chars": 5})
                deadline = time.monotonic() + 10
                while server.metric("textgen_queue_depth", model=ENGLISH) < 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                refused = server.post("/v1/generate", long)
                assert_error(refused, 429)
                assert int(refused.headers["Retry-After"]) >= 1
                assert_error(server.post("/v1/generate/stream", long), 429)
                running.close()  # the client goes away: its row is freed and the queue moves on
                assert waiting.result().status_code == 200
        assert server.post("/v1/generate", {**long, "max_new_chars": 5}).status_code == 200
    finally:
        server.close()


def test_503_for_a_model_that_fails_to_load_and_the_server_keeps_serving(contract):
    assert_error(contract.post("/v1/generate", {"model": "broken"}), 503, "model")
    assert_error(contract.post("/v1/generate/stream", {"model": "broken"}), 503, "model")
    assert contract.get("/health").json() == {"status": "ok", "models": 2}
    assert contract.post("/v1/generate", {"model": ENGLISH, "max_new_chars": 5}).status_code == 200


def test_503_and_health_while_draining(contract_exports):
    server = LiveServer({"checkpoints": contract_exports})
    try:
        request = {"model": ENGLISH, "max_new_chars": 400, "seed": 5}
        with requests.post(server.url + "/v1/generate/stream", json=request, stream=True, timeout=60) as running:
            chunks = running.iter_content(None)
            first = next(chunks)
            drained = {}
            drainer = threading.Thread(target=lambda: drained.setdefault("ok", server.state.drain(timeout=60)))
            drainer.start()
            while not server.state.draining.is_set():
                time.sleep(0.01)
            health = server.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "draining"
            assert_error(server.post("/v1/generate", request), 503)
            rest = b"".join(chunks)
            drainer.join(30)
        events = parse_sse((first + rest).decode())
        assert events[-1] == "[DONE]" and drained["ok"] is True  # the running stream finished
        assert sum(len(e["text"]) for e in events if isinstance(e, dict) and "text" in e) == 400
    finally:
        server.close()


def test_503_when_no_model_exists(tmp_path):
    app = create_app({"TESTING": True, "checkpoints": tmp_path})
    response = app.test_client().get("/health")
    assert response.status_code == 503 and response.json == {"status": "unavailable", "models": 0}


# --------------------------------------------------------------------------- settings
def test_settings_come_from_the_config_with_environment_overrides(monkeypatch, tmp_path):
    from server.settings import load_settings

    defaults = load_settings()
    assert defaults.batching.max_batch_size == 32 and defaults.limits.max_body_bytes == 65536
    monkeypatch.setenv("TEXTGEN_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("TEXTGEN_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("TEXTGEN_PRELOAD", "true")
    settings = load_settings({"limits": {"max_prompt_chars": 10}})
    assert settings.checkpoints == tmp_path and settings.batching.max_batch_size == 4 and settings.preload
    assert settings.limits.max_prompt_chars == 10


def test_models_load_once(contract_exports):
    app = create_app({"TESTING": True, "checkpoints": contract_exports, "preload": True})
    try:
        registry = app.extensions["textgen"].registry
        loads = app.extensions["textgen"].metrics.model_loads
        assert loads.labels(model=VERSE, outcome="loaded")._value.get() == 1
        client = app.test_client()
        for _ in range(3):
            assert client.post("/v1/generate", json={"model": VERSE, "max_new_chars": 3}).status_code == 200
        assert loads.labels(model=VERSE, outcome="loaded")._value.get() == 1
        assert registry.get(VERSE) is registry.get(VERSE)
    finally:
        app.extensions["textgen"].registry.close()
