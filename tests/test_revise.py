"""Revising one verse (textgen.forms.revise, POST /v1/poems/revise, the script's revise=): every
candidate keeps every rule with the verses kept, by the independent checker of tests/poem_rules.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO
from poem_rules import poem_problems, verses_of
from server_fixtures import MODELS

from textgen.forms import FormError, prepare_form
from textgen.forms.revise import prepare_revision, rank_candidates
from textgen.sampling import SamplingParams, generate

FORMS = [
    {"kind": "jueju", "chars_per_line": 7, "title": "春日"},
    {"kind": "lushi", "chars_per_line": 5},
    {"kind": "jueju", "chars_per_line": 5, "tones": True, "first_verse_rhymes": True, "no_repeat": True,
     "keywords": ["月"]},
    {"kind": "lushi", "chars_per_line": 7, "acrostic": "春江花月夜山风雨", "tones": True, "no_repeat": True,
     "keywords": ["江南", "月"]},
    {"kind": "jueju", "chars_per_line": 7, "tones": "仄起", "book": "中华新韵"},
]


def poem_of(tang, form: dict, seed: int) -> str:
    prepared = prepare_form(form, tang)
    return generate(tang, prepared.prompt, SamplingParams(seed=seed),
                    constraint=lambda i: prepared.new_constraint())[0].text


def draw(tang, plan, seed: int, temperature: float, n: int = 12) -> list[str]:
    params = SamplingParams(n=n, seed=seed, temperature=temperature, max_new_chars=plan.form.chars_per_line)
    return [s.text for s in generate(tang, plan.prompt, params, constraint=lambda i: plan.new_constraint())]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_every_candidate_keeps_every_rule_with_the_verses_kept(tang, form):
    verses_n = 4 if form["kind"] == "jueju" else 8
    checked = 0
    for seed, temperature, verses in ((1, 0.0, (2,)), (2, 1.0, (1, verses_n)), (3, 2.0, (3,))):
        poem = poem_of(tang, form, seed)
        assert poem_problems(poem, form) == [], poem
        old, _ = verses_of(poem, form["chars_per_line"], verses_n)
        for verse in verses:
            plan = prepare_revision(form, tang, poem, verse)
            candidates = rank_candidates(tang, plan, draw(tang, plan, seed + verse, temperature), 3)
            assert candidates or temperature == 0.0  # greedy draws are one verse, maybe the old one
            logprobs = [c.logprob for c in candidates]
            assert logprobs == sorted(logprobs, reverse=True)
            for c in candidates:
                new, _ = verses_of(c.poem, form["chars_per_line"], verses_n)
                assert poem_problems(c.poem, form) == [], (verse, c.poem)
                assert new[verse - 1] == c.verse != old[verse - 1]
                assert new[:verse - 1] + new[verse:] == old[:verse - 1] + old[verse:]
                checked += 1
    assert checked >= 6


def test_the_verses_after_count_in_the_ranking(tang):
    """The log-probability is the whole poem's: the same verse scores differently before other verses."""
    form = {"kind": "jueju", "chars_per_line": 5}
    poem = poem_of(tang, form, 4)
    plan = prepare_revision(form, tang, poem, 1)
    candidates = rank_candidates(tang, plan, draw(tang, plan, 5, 1.0), 3)
    from textgen.evaluation import continuation_logprobs

    for c in candidates:
        assert c.logprob == pytest.approx(sum(continuation_logprobs(tang, "", c.poem)), abs=1e-3)
        assert c.logprob < sum(continuation_logprobs(tang, "", plan.head + c.verse + "，"))


@pytest.mark.parametrize("change,field", [
    (lambda v: [v[0], v[1], v[2], v[3][:-1] + "一"], "form.rhyme"),  # the kept rhyme verses no longer rhyme
    (lambda v: [v[0], v[1], v[0], v[3]], "form.no_repeat"),  # the kept verses repeat characters
    (lambda v: [v[0], v[1], v[2][:-1], v[3]], "poem"),  # a verse too short
])
def test_what_cannot_be_kept_is_refused_naming_the_rule(tang, change, field):
    form = {"kind": "jueju", "chars_per_line": 5, "no_repeat": True}
    poem = poem_of(tang, form, 6)
    verses, _ = verses_of(poem, 5, 4)
    broken = "\n".join(f"{a}，{b}。" for a, b in zip(*[iter(change(verses))] * 2))
    with pytest.raises(FormError) as caught:
        prepare_revision(form, tang, broken, 2)
    assert caught.value.field == field, str(caught.value)


def test_a_revision_over_rest_and_its_errors(live):
    form = {"kind": "lushi", "chars_per_line": 5, "title": "秋夜", "no_repeat": True, "keywords": ["月"]}
    poem = live.post("/v1/generate", {"model": MODELS[1], "seed": 3, "form": form}).json()["samples"][0]["text"]
    body = live.post("/v1/poems/revise", {"model": MODELS[1], "form": form, "poem": poem, "verse": 4, "n": 3,
                                          "seed": 1, "temperature": 1.0})
    assert body.status_code == 200, body.text
    candidates = body.json()["candidates"]
    assert 1 <= len(candidates) <= 3
    for c in candidates:
        assert poem_problems(c["poem"], form) == [] and c["verse"] in c["poem"]
    again = live.post("/v1/poems/revise", {"model": MODELS[1], "form": form, "poem": "秋夜\n" + poem, "verse": 4,
                                           "n": 3, "seed": 1, "temperature": 1.0}).json()
    assert again["candidates"] == candidates  # seeded; a leading title line is the form's title
    for request, status, field in (
        ({"verse": 9}, 422, "verse"),
        ({"verse": 0}, 422, "verse"),
        ({"poem": poem[:-1]}, 422, "poem"),
        ({"form": {**form, "book": "广韵"}}, 422, "form.book"),
        ({"form": {"kind": "latex"}}, 422, "form.kind"),
        ({"form": {"kind": {}}}, 422, "form.kind"),  # not a name (was a 500: unhashable)
        ({"model": "nope"}, 404, "model"),
        ({"n": 99}, 422, "n"),
    ):
        answer = live.post("/v1/poems/revise", {"model": MODELS[1], "form": form, "poem": poem, "verse": 2,
                                                **request})
        assert answer.status_code == status, (request, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text


def test_the_script_revises_a_verse(tiny_tang, tang):
    form = {"kind": "jueju", "chars_per_line": 7, "title": "春日"}
    poem = poem_of(tang, form, 1)
    done = subprocess.run([sys.executable, "-m", "textgen.sample", f"checkpoint={tiny_tang}", "form=jueju",
                           "chars_per_line=7", "title=春日", "verse=3", "n=2", "seed=2", "temperature=1.0",
                           f"revise={poem}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    poems = [block.split("\n", 2)[2].strip() for block in done.stdout.split("--- candidate")[1:]]
    assert poems and all(poem_problems(p, form) == [] and p != poem for p in poems), done.stdout
    done = subprocess.run([sys.executable, "-m", "textgen.sample", f"checkpoint={tiny_tang}", "form=jueju",
                           "chars_per_line=7", f"revise={poem}"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 2 and "verse" in done.stderr, done.stderr
