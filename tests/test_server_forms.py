"""Forms through the server: ``form`` goes to ``textgen.forms.prepare_form``; its FormError is a 422."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from ci_rules import ci_problems
from conftest import corpus_file
from server_fixtures import CONTRACT_MODELS, MODELS
from test_server_openapi import check_against_spec

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
    (VERSE, {"kind": "ci", "tune": "浣西沙"}, "form.tune"),
    (VERSE, {"kind": "ci"}, "form.tune"),
    (VERSE, {"kind": "ci", "tune": "浣溪沙", "variant": 9}, "form.variant"),
    (ENGLISH, {"kind": "jueju", "chars_per_line": 5}, "form.kind"),  # no ，。 in its vocabulary
])
@pytest.mark.parametrize("path", ["/v1/generate", "/v1/generate/stream"])
def test_a_form_the_model_or_prompt_cannot_satisfy_is_a_422(contract, path, model, form, field):
    response = contract.post(path, {"model": model, "form": form})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["code"] == "validation_error"


# --------------------------------------------------------------------------- ci (词) to a tune
def test_a_ci_is_written_to_its_tune_whole_and_streamed(live):
    """``form: ci`` through the generic form path: the tune's shape and rhymes, by the independent checker."""
    songci = corpus_file("songci")
    for tune, seed in (("浣溪沙", 1), ("鹧鸪天", 2)):
        request = {"model": TANG, "seed": seed, "form": {"kind": "ci", "tune": tune, "title": "春晚"}}
        (sample,) = live.post("/v1/generate", request).json()["samples"]
        assert sample["finish_reason"] == "form_complete"
        assert ci_problems(sample["text"], tune, songci) == [], sample["text"]
        events = live.stream(request)
        assert "".join(e["text"] for e in events if isinstance(e, dict) and "text" in e) == sample["text"]
        assert events[-2]["usage"]["prompt_chars"] == len(f"{tune}\n春晚\n")  # the tune line, then the title


def test_an_unknown_tune_is_a_422_naming_the_nearest(contract):
    error = contract.post("/v1/generate", {"model": VERSE, "form": {"kind": "ci", "tune": "浣西沙"}}).json()["error"]
    assert error["field"] == "form.tune" and "浣溪沙" in error["message"] and "/tunes" in error["message"]


def test_a_model_s_tunes_with_their_shapes_and_stanzas(live):
    spec = live.get("/openapi.json").json()
    response = live.get(f"/v1/models/{TANG}/tunes")
    check_against_spec(spec, "GET", "/v1/models/{name}/tunes", response)
    body = response.json()
    assert body["model"] == TANG
    tunes = {entry["tune"]: entry for entry in body["tunes"]}
    counts = [entry["ci"] for entry in body["tunes"]]
    assert counts == sorted(counts, reverse=True) and len(tunes) >= 50
    shape = tunes["鹧鸪天"]["variants"][0]
    assert shape["name"] == "正体" and shape["signature"] == "7/7/7,7/3,3/7/7,7"
    assert [(st["name"], st["sentences"], st["lines"]) for st in shape["stanzas"]] == [("上阕", 4, 3), ("下阕", 5, 3)]
    assert [s["length"] for s in shape["sentences"][shape["stanzas"][1]["start"]:]] == [3, 3, 7, 7, 7]
    english = live.get(f"/v1/models/{SHAKESPEARE}/tunes")
    check_against_spec(spec, "GET", "/v1/models/{name}/tunes", english)
    assert english.json() == {"model": SHAKESPEARE, "tunes": []}  # no ，。 in its vocabulary: it writes no ci
    unknown = live.get("/v1/models/nope/tunes")
    check_against_spec(spec, "GET", "/v1/models/{name}/tunes", unknown)
    assert unknown.status_code == 404 and unknown.json() == live.get("/v1/models/nope/latex").json()
