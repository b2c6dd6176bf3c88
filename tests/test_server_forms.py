"""Forms through the server: ``form`` goes to ``textgen.forms.prepare_form``; its FormError is a 422."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from server_fixtures import CONTRACT_MODELS, MODELS

SHAKESPEARE, TANG = MODELS
ENGLISH, VERSE = CONTRACT_MODELS  # untrained, with the vocabularies of the trained ones (VERSE has ，。)
pytest.importorskip("textgen.forms")


def verses(text: str, chars: int) -> list[str]:
    """The verses of a poem written as the corpus writes it (one couplet a line), or fail."""
    line = rf"([^，。\n]{{{chars}}})，([^，。\n]{{{chars}}})。"
    lines = text.split("\n")
    assert all(re.fullmatch(line, couplet) for couplet in lines), text
    return [v for couplet in lines for v in re.fullmatch(line, couplet).groups()]


def test_jueju_with_acrostic(live):
    body = live.post("/v1/generate", {"model": TANG, "seed": 3, "n": 2,
                                      "form": {"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}}).json()
    for sample in body["samples"]:
        assert sample["finish_reason"] == "form_complete"
        assert [v[0] for v in verses(sample["text"], 5)] == list("春夏秋冬")


def test_lushi_with_title_streams_and_counts_the_title_as_prompt(live):
    request = {"model": TANG, "seed": 4, "form": {"kind": "lushi", "chars_per_line": 7, "title": "春望"}}
    events = live.stream(request)
    text = "".join(e["text"] for e in events if isinstance(e, dict) and "text" in e)
    assert len(verses(text, 7)) == 8
    assert any(isinstance(e, dict) and e.get("finish_reason") == "form_complete" for e in events)
    assert events[-2]["usage"]["prompt_chars"] == len("春望\n")
    assert live.post("/v1/generate", request).json()["samples"][0]["text"] == text


def test_a_form_row_gives_the_same_text_alone_and_batched(live):
    request = {"model": TANG, "seed": 11, "temperature": 1.0,
               "form": {"kind": "jueju", "chars_per_line": 7, "rhyme": True}}
    alone = live.post("/v1/generate", request).json()["samples"][0]["text"]
    with ThreadPoolExecutor(6) as pool:
        others = [pool.submit(live.post, "/v1/generate", {"model": TANG, "prompt": p, "max_new_chars": 50})
                  for p in "山水风花雪"]
        mine = pool.submit(live.post, "/v1/generate", request)
        assert all(f.result().status_code == 200 for f in others)
        assert mine.result().json()["samples"][0]["text"] == alone


@pytest.mark.parametrize(("model", "form", "field"), [
    (VERSE, {"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏"}, "form.acrostic"),
    (VERSE, {"kind": "jueju", "chars_per_line": 6}, "form.chars_per_line"),
    (VERSE, {"kind": "sonnet"}, "form.kind"),
    (VERSE, {"kind": "jueju", "chars_per_line": 5, "colour": "red"}, "form.colour"),
    (ENGLISH, {"kind": "jueju", "chars_per_line": 5}, "form.kind"),  # no ，。 in its vocabulary
])
@pytest.mark.parametrize("path", ["/v1/generate", "/v1/generate/stream"])
def test_a_form_the_model_or_prompt_cannot_satisfy_is_a_422(contract, path, model, form, field):
    response = contract.post(path, {"model": model, "form": form})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["code"] == "validation_error"
