"""平仄 (tones), 孤平, 三平尾, 首句入韵, rhyme by both books, no_repeat and keywords: every sample obeys
them, checked by tests/poem_rules.py.

The checker is independent of ``textgen.forms`` (its own tone, rhyme and rule code over pypinyin);
the model is the tiny Tang model of ``conftest.py``, sampled at temperatures 0 to 2 over many seeds.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from poem_rules import poem_problems, tones
from server_fixtures import MODELS

from textgen.forms import FORM_CLASSES, FORM_KINDS, FormError, api_fields, check_text, form_keys, prepare_form
from textgen.forms.tang import KIND_DEFAULTS
from textgen.sampling import SamplingParams, generate

TEMPERATURES = (0.0, 0.5, 1.0, 1.5, 2.0)
SEEDS_PER_TEMPERATURE = 1
ROWS = 16

FORMS = [
    {"kind": "jueju", "chars_per_line": 5, "tones": True},
    {"kind": "lushi", "chars_per_line": 7, "tones": "平起"},
    {"kind": "jueju", "chars_per_line": 7, "tones": "仄起", "rhyme": True},
    {"kind": "lushi", "chars_per_line": 5, "no_repeat": True, "rhyme": True},
    {"kind": "jueju", "chars_per_line": 5, "keywords": ["江", "月"]},
    {"kind": "lushi", "chars_per_line": 7, "keywords": ["明月", "江南", "不"], "no_repeat": True},
    {"kind": "lushi", "chars_per_line": 7, "title": "秋夜", "acrostic": "一二三四五六七八", "tones": True,
     "rhyme": True, "no_repeat": True, "keywords": ["月", "江"]},
    {"kind": "jueju", "chars_per_line": 5, "title": "春日", "acrostic": "春夏秋冬", "tones": "平起", "rhyme": True,
     "no_repeat": True, "keywords": ["明月", "山"]},
    {"kind": "jueju", "chars_per_line": 7, "acrostic": "风花雪月", "tones": True, "rhyme": True, "no_repeat": True,
     "keywords": ["月明"]},  # 月 is a head, so under no_repeat 月明 can only open the last verse
    # the defaults (rhyme by 平水韵; lushi also tones), and each new rule alone and with the others
    {"kind": "jueju", "chars_per_line": 7},
    {"kind": "lushi", "chars_per_line": 5},
    {"kind": "jueju", "chars_per_line": 7, "first_verse_rhymes": True},
    {"kind": "jueju", "chars_per_line": 5, "first_verse_rhymes": False},
    {"kind": "jueju", "chars_per_line": 7, "tones": True, "first_verse_rhymes": True},
    {"kind": "jueju", "chars_per_line": 5, "tones": "平起", "first_verse_rhymes": True, "no_repeat": True},
    {"kind": "lushi", "chars_per_line": 7, "tones": "仄起", "first_verse_rhymes": False, "keywords": ["月"]},
    {"kind": "lushi", "chars_per_line": 7, "acrostic": "春夏秋冬一二三四", "first_verse_rhymes": True,
     "no_repeat": True, "keywords": ["江南"]},
    # 中华新韵: the rules as before 平水韵
    {"kind": "jueju", "chars_per_line": 7, "tones": True, "book": "中华新韵"},
    {"kind": "lushi", "chars_per_line": 5, "tones": "仄起", "no_repeat": True, "book": "中华新韵"},
    {"kind": "jueju", "chars_per_line": 7, "first_verse_rhymes": True, "tones": True, "book": "中华新韵"},
]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_every_sample_keeps_every_rule_at_any_temperature(tang, form):
    prepared = prepare_form(form, tang)
    checked = 0
    for t, temperature in enumerate(TEMPERATURES):
        for k in range(SEEDS_PER_TEMPERATURE):
            params = SamplingParams(n=ROWS, seed=1000 * t + ROWS * k, temperature=temperature, max_new_chars=10)
            for s in generate(tang, prepared.prompt, params, constraint=lambda i: prepared.new_constraint()):
                assert s.finish_reason == "form_complete", (temperature, s)
                assert poem_problems(s.text, form) == [], (temperature, s.text)
                assert check_text(prepared.form, s.text, prepared.prompt) is None
                checked += 1
    assert checked == len(TEMPERATURES) * SEEDS_PER_TEMPERATURE * ROWS


def test_the_checker_knows_gu_ping_and_san_ping_wei():
    """孤平 and 三平尾 by 平水韵 (月 照 客 are 入/去 声; 无 人 来 level only), and verses without them."""
    from poem_rules import fine_problems

    assert fine_problems("月明照客家", "平水韵") == ["孤平 in '月明照客家'"]
    assert fine_problems("山中无人来", "平水韵") == ["三平尾 in '山中无人来'"]
    assert fine_problems("明月照高楼", "平水韵") == []
    assert fine_problems("江明照客家", "平水韵") == []  # 平平仄仄平
    assert fine_problems("江客月明照客家", "平水韵") == ["孤平 in '江客月明照客家'"]


def test_the_checker_reads_the_classical_book():
    """入声 characters are oblique by 平水韵 and level in Mandarin; 元 and 寒 are apart, 斜 is in 麻."""
    assert all(tones(c, "平水韵") == {"仄"} for c in "一白国十竹出") and all("平" in tones(c) for c in "白国十竹")
    from poem_rules import rhyme_groups, shared_groups

    assert not shared_groups("元寒", "平水韵") and shared_groups("斜花家", "平水韵") == {"麻"}
    assert {"寒"} <= rhyme_groups("看", "平水韵") and tones("看", "平水韵") == {"平", "仄"}


def test_rules_continue_a_prompt_and_the_pattern_follows_its_first_verse(tang):
    form = {"kind": "jueju", "chars_per_line": 5, "tones": True, "no_repeat": True, "keywords": ["日"]}
    prompt = "白日依山尽，"  # 日 (rì) is oblique: the poem is 仄起, and 日 is already written
    prepared = prepare_form(form, tang, prompt)
    for s in generate(tang, prepared.prompt, SamplingParams(n=ROWS, seed=5, temperature=1.5),
                      constraint=lambda i: prepared.new_constraint()):
        assert poem_problems(prompt + s.text, {**form, "tones": "仄起"}) == [], s.text
        assert "日" not in s.text


def test_a_keyword_is_placed_when_the_verses_run_out(tang):
    """At temperature 0 the poem is the model's own until the keyword has to be placed."""
    plain = prepare_form({"kind": "jueju", "chars_per_line": 5}, tang)
    free = generate(tang, plain.prompt, SamplingParams(temperature=0.0), constraint=lambda i: plain.new_constraint())
    if "江南" in free[0].text:
        pytest.skip("the tiny model writes 江南 by itself")
    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "keywords": ["江南"]}, tang)
    text = generate(tang, prepared.prompt, SamplingParams(temperature=0.0),
                    constraint=lambda i: prepared.new_constraint())[0].text
    at = text.index("江南")
    assert at > len(text) // 2, text  # not forced early: the model's own verses come first
    assert text[:6] == free[0].text[:6]


# --------------------------------------------------------------------------- what cannot be met: 422
LEVEL_ONLY = "江山天花东"  # each has level readings only, in both books: 二四分明 cannot hold in a verse of them


@pytest.mark.parametrize("book", ["平水韵", "中华新韵"])
def test_the_level_only_word_really_is_level_only(book):
    assert all(tones(c, book) == {"平"} for c in LEVEL_ONLY)


@pytest.mark.parametrize("form,prompt,field", [
    ({"keywords": "江"}, "", "form.keywords"),
    ({"keywords": ["龘"]}, "", "form.keywords"),
    ({"keywords": ["a"]}, "", "form.keywords"),
    ({"keywords": [""]}, "", "form.keywords"),
    ({"keywords": ["一二三四五六"]}, "", "form.keywords"),
    ({"keywords": ["江", "江"]}, "", "form.keywords"),
    ({"keywords": ["江", "江南"]}, "", "form.keywords"),
    ({"keywords": ["江", "山", "天", "风", "东"]}, "", "form.keywords"),
    ({"keywords": [5]}, "", "form.keywords"),
    ({"tones": "maybe"}, "", "form.tones"),
    ({"tones": 1}, "", "form.tones"),
    ({"no_repeat": "yes"}, "", "form.no_repeat"),
    ({"acrostic": "春春秋冬", "no_repeat": True}, "", "form.acrostic"),
    ({"keywords": ["明明"], "no_repeat": True}, "", "form.keywords"),
    ({"keywords": ["江月", "月明"], "no_repeat": True}, "", "form.keywords"),
    ({"keywords": [LEVEL_ONLY], "tones": True}, "", "form.keywords"),
    ({"keywords": ["风春"], "acrostic": "春夏秋冬", "no_repeat": True}, "", "form.keywords"),
    ({"tones": "仄起"}, "春山", "prompt"),
    ({"book": "平仄韵"}, "", "form.book"),
    ({"first_verse_rhymes": "yes"}, "", "form.first_verse_rhymes"),
    ({"first_verse_rhymes": True, "rhyme": False}, "", "form.first_verse_rhymes"),
    ({"rhyme": "no"}, "", "form.rhyme"),
    ({"no_repeat": True}, "春山春", "prompt"),
    ({"keywords": ["月"], "no_repeat": True}, "明月照高楼，流光正徘徊。\n借问楼上月", "prompt"),
])
def test_impossible_forms_are_refused_naming_the_field(tang, form, prompt, field):
    with pytest.raises(FormError) as caught:
        prepare_form({"kind": "jueju", "chars_per_line": 5, **form}, tang, prompt)
    assert caught.value.field == field, str(caught.value)


def test_a_keyword_the_prompt_already_wrote_is_done(tang):
    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "keywords": ["明月"], "no_repeat": True},
                            tang, "明月照高楼，")
    s = generate(tang, prepared.prompt, SamplingParams(seed=3), constraint=lambda i: prepared.new_constraint())[0]
    assert "明" not in s.text and "月" not in s.text


@pytest.mark.parametrize("form,field", [
    ({"kind": "jueju", "chars_per_line": 5, "keywords": [LEVEL_ONLY], "tones": True}, "form.keywords"),
    ({"kind": "jueju", "chars_per_line": 5, "keywords": ["龘"]}, "form.keywords"),
    ({"kind": "jueju", "chars_per_line": 5, "keywords": ["一二三四五六"]}, "form.keywords"),
    ({"kind": "jueju", "chars_per_line": 5, "tones": "平平"}, "form.tones"),
    ({"kind": "jueju", "chars_per_line": 5, "acrostic": "春春秋冬", "no_repeat": True}, "form.acrostic"),
])
def test_impossible_forms_are_a_422_over_rest(live, form, field):
    response = live.post("/v1/generate", {"model": MODELS[1], "form": form})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_the_done_when_request_over_rest(live):
    form = {"kind": "lushi", "chars_per_line": 7, "title": "秋夜", "tones": True, "rhyme": True,
            "no_repeat": True, "keywords": ["月", "江"]}
    body = live.post("/v1/generate", {"model": MODELS[1], "n": 4, "seed": 9, "form": form}).json()
    assert len(body["samples"]) == 4
    for sample in body["samples"]:
        assert sample["finish_reason"] == "form_complete"
        assert poem_problems(sample["text"], form) == [], sample["text"]


# --------------------------------------------------------------------------- the script and the one source
def test_sample_script_takes_the_new_options(tiny_tang):
    done = subprocess.run([sys.executable, "-m", "textgen.sample", f"checkpoint={tiny_tang}", "form=lushi",
                           "chars_per_line=7", "title=秋夜", "tones=true", "rhyme=true", "no_repeat=true",
                           "keywords=[月,江]", "seed=2", "n=2"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    poems = re.findall(r"秋夜\n(.*?)\n(?=---|$)", done.stdout + "---", re.S)
    form = {"kind": "lushi", "chars_per_line": 7, "tones": True, "rhyme": True, "no_repeat": True,
            "keywords": ["月", "江"]}
    assert len(poems) == 2 and all(poem_problems(p, form) == [] for p in poems), done.stdout
    done = subprocess.run([sys.executable, "-m", "textgen.sample", f"checkpoint={tiny_tang}", "form=jueju",
                           "tones=平起", "keywords=一二三四五六"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2 and "form.keywords" in done.stderr, done.stderr


def test_form_fields_have_one_source():
    """The script's options and the OpenAPI schema follow the dataclass of every kind in the table."""
    from server.openapi import build_spec
    from server.settings import ServerSettings

    options = yaml.safe_load((REPO / "conf" / "sample.yaml").read_text(encoding="utf-8"))
    kinds = list(dict.fromkeys(FORM_KINDS.values()))
    for kind in kinds:
        for f in api_fields(kind.spec_class):
            if f.name == "kind":
                continue
            assert f.name in options, f"conf/sample.yaml lacks the form option {f.name}"
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            assert options[f.name] in (None, default) or f.default is dataclasses.MISSING, f.name
    spec = build_spec(ServerSettings())
    schemas = spec["components"]["schemas"]
    for kind in kinds:
        assert set(schemas[kind.schema_title]["properties"]) == form_keys(kind.spec_class)
        assert FORM_CLASSES.keys() >= set(kind.kinds) and all(FORM_CLASSES[k] is kind.spec_class for k in kind.kinds)
    form = spec["components"]["schemas"]["GenerateRequest"]["properties"]["form"]
    assert [option.get("$ref") for option in form["anyOf"]] == [
        *(f"#/components/schemas/{kind.schema_title}" for kind in kinds), None]
    assert {"jueju", "lushi", "latex"} <= set(FORM_CLASSES)


def test_min_p_keeps_only_tokens_near_the_most_likely():
    import torch

    from textgen.sampling import SamplingError, sample_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    ones = torch.ones(2000)
    drawn = sample_tokens(logits, ones, torch.zeros(2000, dtype=torch.long), ones, torch.rand(2000),
                          torch.full((2000,), 0.2))
    assert set(drawn.tolist()) == {0, 1, 2}  # 0.05 < 0.2 x 0.5: dropped; 0.15 >= 0.1: kept
    drawn = sample_tokens(logits, ones, torch.zeros(2000, dtype=torch.long), ones, torch.rand(2000),
                          torch.zeros(2000))
    assert set(drawn.tolist()) == {0, 1, 2, 3}
    with pytest.raises(SamplingError) as caught:
        SamplingParams(min_p=1.5)
    assert caught.value.field == "min_p"


def test_the_defaults_have_one_source_and_default_poems_rhyme_by_the_book(live):
    """A jueju/lushi request that names no rule rhymes by 平水韵 (a lushi also keeps the pattern): the
    library's table, the OpenAPI schema the page reads and the checker's contract agree."""
    import poem_rules


    spec = live.get("/openapi.json").json()
    assert spec["components"]["schemas"]["PoemForm"]["x-defaults-by-kind"] == KIND_DEFAULTS == poem_rules.DEFAULTS
    for kind, chars in (("jueju", 7), ("lushi", 5)):
        form = {"kind": kind, "chars_per_line": chars}
        body = live.post("/v1/generate", {"model": MODELS[1], "n": 4, "seed": 2, "temperature": 1.5,
                                          "form": form}).json()
        for sample in body["samples"]:
            assert poem_problems(sample["text"], form) == [], sample["text"]
            verses = re.split(r"[，。\n]+", sample["text"].strip("。"))
            assert poem_rules.shared_groups("".join(v[-1] for v in verses[1::2]), "平水韵")
