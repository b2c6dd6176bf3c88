"""``/v1/chat/completions``, driven by the official ``openai`` client over a real socket."""

from __future__ import annotations

import openai
import pytest
from ci_rules import ci_problems
from conftest import corpus_file
from server_fixtures import CONTRACT_MODELS, MODELS
from test_forms import poem_problems
from test_server_openai import client_for

from server.chat_api import conversation_prompt
from server.openai_schemas import ChatMessage

SHAKESPEARE, TANG = MODELS
VERSE = CONTRACT_MODELS[1]


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return client_for(live)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_the_conversation_rule():
    messages = [ChatMessage(role="system", content="You are a poet."), ChatMessage(role="user", content="春眠"),
                ChatMessage(role="assistant", content="不觉晓，"),
                ChatMessage(role="user", content=[{"type": "text", "text": "处处"}, {"type": "text", "text": "闻"}])]
    assert conversation_prompt(messages) == "春眠\n不觉晓，\n处处闻"


def test_a_chat_answer_is_the_completion_of_the_conversation_s_text(live, client):
    chat = client.chat.completions.create(model=TANG, messages=[{"role": "system", "content": "be brief"},
                                                                *ask("春")], max_tokens=12, seed=1)
    assert chat.object == "chat.completion" and chat.id.startswith("chatcmpl-") and chat.model == TANG
    (choice,) = chat.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    completion = client.completions.create(model=TANG, prompt="春", max_tokens=12, seed=1)
    assert choice.message.content == completion.choices[0].text  # one engine, one seed, one text
    assert chat.usage.prompt_tokens == 1 and chat.usage.completion_tokens == 12
    assert chat.model_extra["textgen"] == {"prompt": "春", "form": None, "understood": [], "ignored": [],
                                           "notes": []}


def test_n_stop_seed_and_logprobs_plain_and_streamed(client):
    options = {"model": TANG, "messages": ask("月"), "max_tokens": 40, "n": 2, "stop": ["。"], "seed": 5}
    plain = client.chat.completions.create(**options, logprobs=True, top_logprobs=2)
    assert [c.index for c in plain.choices] == [0, 1]
    texts = [c.message.content for c in plain.choices]
    assert texts[0] != texts[1]  # two samples: seeds 5 and 6
    for choice in plain.choices:
        assert "。" not in choice.message.content
        if choice.finish_reason == "stop":
            assert len(choice.message.content) < 40
        entries = choice.logprobs.content
        assert "".join(e.token for e in entries) == choice.message.content
        assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
        assert all(e.bytes == list(e.token.encode()) for e in entries)
    again = client.chat.completions.create(**options)
    assert [c.message.content for c in again.choices] == texts  # the seed holds
    chunks = list(client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    for index, text in enumerate(texts):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == text
        assert mine[-1].finish_reason in ("stop", "length")
        assert all(c.finish_reason is None for c in mine[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_streamed_logprobs_are_the_whole_answer_s(client):
    options = {"model": TANG, "messages": ask("山"), "max_tokens": 15, "seed": 2, "logprobs": True, "top_logprobs": 1}
    whole = client.chat.completions.create(**options).choices[0].logprobs.content
    parts = [entry for c in client.chat.completions.create(**options, stream=True) if c.choices and c.choices[0].logprobs
             for entry in c.choices[0].logprobs.content]
    assert [e.token for e in parts] == [e.token for e in whole]
    assert [e.logprob for e in parts] == pytest.approx([e.logprob for e in whole], abs=1e-5)


def test_a_form_asked_in_words_is_written_and_reported(client):
    chat = client.chat.completions.create(model=TANG, messages=ask("写一首五言绝句，题为春日，藏头春夏秋冬"), seed=3)
    (choice,) = chat.choices
    info = chat.model_extra["textgen"]
    assert info["form"] == {"kind": "jueju", "chars_per_line": 5, "title": "春日", "acrostic": "春夏秋冬"}
    assert info["prompt"] == "春日\n" and info["understood"] == ["五言绝句", "题为春日", "藏头春夏秋冬"]
    assert choice.finish_reason == "stop"
    poem = choice.message.content
    assert poem_problems(poem, 5, 4, acrostic="春夏秋冬") == []
    streamed = list(client.chat.completions.create(model=TANG, messages=ask("写一首五言绝句，题为春日，藏头春夏秋冬"),
                                                   seed=3, stream=True))
    assert streamed[0].model_extra["textgen"]["form"] == info["form"]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == poem


def test_a_ci_asked_in_words_is_written_to_its_tune(client):
    chat = client.chat.completions.create(model=TANG, messages=ask("填一首鹧鸪天，题为春晚"), seed=2)
    info = chat.model_extra["textgen"]
    assert info["form"] == {"kind": "ci", "tune": "鹧鸪天", "title": "春晚"}
    assert info["prompt"] == "鹧鸪天\n春晚\n" and info["understood"] == ["鹧鸪天", "题为春晚"] and info["ignored"] == []
    assert ci_problems(chat.choices[0].message.content, "鹧鸪天", corpus_file("songci")) == []
    plain = client.chat.completions.create(model=TANG, messages=ask("写一首浣溪沙"), seed=2)
    assert plain.model_extra["textgen"]["form"] == {"kind": "ci", "tune": "浣溪沙"}
    assert ci_problems(plain.choices[0].message.content, "浣溪沙", corpus_file("songci")) == []


def test_a_form_in_words_a_model_cannot_write_is_a_plain_continuation(client):
    chat = client.chat.completions.create(model=SHAKESPEARE, messages=ask("a seven-character quatrain titled 春日"),
                                          max_tokens=10, seed=1)
    assert chat.model_extra["textgen"]["form"] is None and len(chat.choices[0].message.content) == 10
    chat = client.chat.completions.create(model=SHAKESPEARE, messages=ask("写一首浣溪沙"), max_tokens=10, seed=1)
    assert chat.model_extra["textgen"]["form"] is None and len(chat.choices[0].message.content) == 10


def test_extra_body_reaches_the_sampler_on_both_openai_routes(client):
    """min_p, top_k, repetition_penalty, best_of and form go through extra_body, as with vLLM."""
    extra = {"min_p": 0.3, "top_k": 5, "repetition_penalty": 1.2}
    chat = client.chat.completions.create(model=TANG, messages=ask("秋"), max_tokens=20, seed=7, extra_body=extra)
    completion = client.completions.create(model=TANG, prompt="秋", max_tokens=20, seed=7, extra_body=extra)
    assert chat.choices[0].message.content == completion.choices[0].text
    plain = client.chat.completions.create(model=TANG, messages=ask("秋"), max_tokens=20, seed=7)
    assert plain.choices[0].message.content != chat.choices[0].message.content  # min_p changed the draw
    poem = client.chat.completions.create(model=TANG, messages=ask("春"), seed=1, extra_body={
        "form": {"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}})
    assert poem_problems("春" + poem.choices[0].message.content, 5, 4, acrostic="春夏秋冬") == []  # continues 春


def test_chat_errors_are_the_client_s_exceptions(contract):
    client = client_for(contract)
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=ask("x"))
    assert error.value.code == "model_not_found" and error.value.param == "model"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.chat.completions.create(model=VERSE, messages=ask("x"), extra_body={"min_p": 2})
    assert error.value.param == "min_p"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.chat.completions.create(model=VERSE, messages=ask("x"), max_completion_tokens=20001)
    assert error.value.param == "max_completion_tokens"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.chat.completions.create(model=VERSE, messages=[])
    assert error.value.param == "messages"
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.chat.completions.create(model=VERSE, messages=ask("x"), top_logprobs=2)
    assert error.value.param == "top_logprobs"
    with pytest.raises(openai.UnprocessableEntityError) as error:  # a head the model cannot write
        client.chat.completions.create(model=VERSE, messages=ask("写一首五言绝句，藏头甲乙丙丁"))
    assert error.value.param == "form.acrostic" and "藏头甲乙丙丁" in error.value.message
    with pytest.raises(openai.UnprocessableEntityError) as error:
        client.chat.completions.create(model=VERSE, messages=ask("x"), n=2, extra_body={"best_of": 3}, stream=True)
    assert error.value.param == "best_of"
    with pytest.raises(openai.APIStatusError) as error:  # over the test server's 512 prompt characters
        client.chat.completions.create(model=VERSE, messages=ask("春" * 300) + ask("秋" * 300))
    assert error.value.status_code == 413 and error.value.body["param"] == "messages"
