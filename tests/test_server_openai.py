"""The OpenAI-compatible routes, driven by the official ``openai`` client over a real socket."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from ci_rules import ci_problems
from conftest import corpus_file
from live_server import LiveServer
from server_fixtures import CONTRACT_MODELS, MODELS
from test_forms import poem_problems

from textgen.evaluation import continuation_logprobs
from textgen.export import load_export

SHAKESPEARE, TANG = MODELS
VERSE = CONTRACT_MODELS[1]  # untrained: the error statuses need no trained weights
POEM = {"kind": "jueju", "chars_per_line": 5, "title": "春日"}


def client_for(server: LiveServer, **options) -> openai.OpenAI:
    """The official client, as a user points it at textgen."""
    return openai.OpenAI(base_url=server.url + "/v1", **{"api_key": "unused", "max_retries": 0, "timeout": 60, **options})


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return client_for(live)


def test_a_completion_is_the_native_engine_s_text(live, client):
    completion = client.completions.create(model=TANG, prompt="春", max_tokens=12, seed=1, logprobs=2)
    assert completion.object == "text_completion" and completion.model == TANG and completion.id.startswith("cmpl-")
    (choice,) = completion.choices
    assert choice.index == 0 and choice.finish_reason == "length" and len(choice.text) == 12
    native = live.post("/v1/generate", {"model": TANG, "prompt": "春", "max_new_chars": 12, "seed": 1}).json()
    assert choice.text == native["samples"][0]["text"]  # one sampler, one seed, one text
    assert completion.usage.prompt_tokens == 1 and completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == 13
    lp = choice.logprobs
    assert lp.tokens == list(choice.text) and lp.text_offset == list(range(12))
    served = next(m["runtime"] for m in live.get("/v1/models").json()["models"] if m["name"] == TANG)
    model = load_export(live.state.settings.checkpoints / TANG, quantize=served["quantize"])  # as `auto` chose
    assert lp.token_logprobs == pytest.approx(continuation_logprobs(model, "春", choice.text), abs=2e-4)
    assert all(len(top) == 2 for top in lp.top_logprobs)


def test_streaming_sends_the_same_text_in_chunks_then_done(client):
    whole = client.completions.create(model=TANG, prompt="月", max_tokens=30, seed=2).choices[0].text
    chunks = list(client.completions.create(model=TANG, prompt="月", max_tokens=30, seed=2, stream=True,
                                            stream_options={"include_usage": True}))
    texts = [c.choices[0] for c in chunks if c.choices]
    assert len(texts) > 2 and "".join(c.text for c in texts) == whole
    assert [c.finish_reason for c in texts][-1] == "length" and all(c.finish_reason is None for c in texts[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30


def test_a_stream_s_log_probabilities_are_the_whole_answer_s(client):
    """Each chunk carries its own characters' numbers, with offsets that run on across chunks."""
    whole = client.completions.create(model=TANG, prompt="月", max_tokens=20, seed=4, logprobs=2).choices[0]
    chunks = [c.choices[0] for c in client.completions.create(model=TANG, prompt="月", max_tokens=20, seed=4,
                                                                 logprobs=2, stream=True) if c.choices[0].text]
    assert len(chunks) > 2 and "".join(c.text for c in chunks) == whole.text
    assert [t for c in chunks for t in c.logprobs.tokens] == whole.logprobs.tokens
    assert [o for c in chunks for o in c.logprobs.text_offset] == list(range(20))
    streamed = [v for c in chunks for v in c.logprobs.token_logprobs]
    assert streamed == pytest.approx(whole.logprobs.token_logprobs, abs=1e-6)
    assert [t for c in chunks for t in c.logprobs.top_logprobs] == whole.logprobs.top_logprobs


def test_n_samples_under_a_form_from_extra_body(client):
    completion = client.completions.create(model=TANG, prompt="", n=3, seed=3, temperature=1.0,
                                           extra_body={"form": POEM, "top_k": 40, "repetition_penalty": 1.1})
    assert [c.index for c in completion.choices] == [0, 1, 2]
    for choice in completion.choices:
        assert choice.finish_reason == "stop"  # form_complete is OpenAI's natural stop
        assert poem_problems(choice.text.strip("\n"), 5, 4) == [], choice.text
    assert len({c.text for c in completion.choices}) == 3


def test_a_ci_to_a_tune_from_extra_body(client):
    completion = client.completions.create(model=TANG, prompt="", seed=5, extra_body={"form": {"kind": "ci", "tune": "西江月"}})
    (choice,) = completion.choices
    assert choice.finish_reason == "stop"
    assert ci_problems(choice.text, "西江月", corpus_file("songci")) == [], choice.text
    assert completion.usage.prompt_tokens == len("西江月\n")  # the tune line the model reads first


def test_a_list_of_prompts_with_best_of_and_echo(client):
    completion = client.completions.create(model=TANG, prompt=["春", "秋"], n=2, best_of=4, max_tokens=10, seed=4,
                                           echo=True, logprobs=0)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert [c.text[0] for c in completion.choices] == ["春", "春", "秋", "秋"]  # answered in order, echoed
    means = [sum(c.logprobs.token_logprobs[1:]) / 10 for c in completion.choices]
    assert means[0] >= means[1] and means[2] >= means[3]  # best first
    assert completion.usage.completion_tokens == 2 * 4 * 10  # every candidate was generated
    scored = client.completions.create(model=TANG, prompt="春眠不觉晓", max_tokens=0, echo=True, logprobs=0)
    assert scored.choices[0].text == "春眠不觉晓" and len(scored.choices[0].logprobs.token_logprobs) == 5


def test_models_list_in_the_openai_shape_keeps_textgen_fields(client):
    models = list(client.models.list())
    assert sorted(m.id for m in models) == sorted(MODELS)
    for model in models:
        assert model.object == "model" and model.owned_by == "textgen" and model.created > 1_600_000_000
        assert model.model_extra["name"] == model.id and model.model_extra["vocab_size"] > 0


def test_errors_are_the_client_s_exceptions(contract):
    client = client_for(contract)
    with pytest.raises(openai.NotFoundError) as error:
        client.completions.create(model="no-such-model", prompt="x")
    assert error.value.param == "model" and error.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.completions.create(model=VERSE, prompt="x", temperature=-1)
    assert error.value.param == "temperature" and "temperature" in error.value.message
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.completions.create(model=VERSE, prompt="x", best_of=3, n=2, stream=True)
    assert error.value.param == "best_of"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.completions.create(model=VERSE, prompt="x", max_tokens=20001)  # over the test server's limit
    assert error.value.param == "max_tokens"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.completions.create(model=VERSE, prompt="x", extra_body={"form": {"kind": "sonnet"}})
    assert error.value.param.startswith("form")
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.completions.create(model=VERSE, prompt="", extra_body={"form": {"kind": "ci", "tune": "鹧鸪"}})
    assert error.value.param == "form.tune" and "鹧鸪天" in error.value.message
    contract.state.draining.set()
    try:
        with pytest.raises(openai.InternalServerError) as error:
            client.completions.create(model=VERSE, prompt="x")
        assert error.value.status_code == 503
    finally:
        contract.state.draining.clear()


BLOCKER_CHARS = 50_000


def test_a_full_queue_is_answered_429_and_the_client_retries(server_exports):
    """One row a batch and no queue: while a stream holds the row, a request is 429 (Retry-After 1);
    the client waits as told and retries, and gets its text once the stream's client goes away."""
    server = LiveServer({"checkpoints": server_exports, "limits": {"max_new_chars": BLOCKER_CHARS},
                         "batching": {"max_batch_size": 1, "queue_length": 0, "max_wait_ms": 0}})
    try:
        # long enough to outlast the 1.5 s below however fast a step is (a tiny model's can take 0.1 ms)
        blocker = client_for(server).completions.create(model=SHAKESPEARE, prompt="", max_tokens=BLOCKER_CHARS,
                                                        stream=True)
        next(iter(blocker))  # it is generating: it holds the only row
        with pytest.raises(openai.RateLimitError) as error:
            client_for(server).completions.create(model=SHAKESPEARE, prompt="a", max_tokens=5)
        assert error.value.response.headers["Retry-After"] == "1" and error.value.code == "rate_limit_exceeded"
        threading.Timer(1.5, blocker.close).start()  # the stream's client disconnects: its row is freed
        started = time.perf_counter()
        completion = client_for(server, max_retries=4).completions.create(model=SHAKESPEARE, prompt="a", max_tokens=5)
        assert len(completion.choices[0].text) == 5
        assert time.perf_counter() - started >= 1.0  # it waited as Retry-After said
        assert server.metric("textgen_requests_total", endpoint="/v1/completions", method="POST", status="429") >= 2
        assert server.metric("textgen_generated_chars_total", model=SHAKESPEARE) < BLOCKER_CHARS  # it stopped early
    finally:
        server.close()
