"""The form a request in words asks for (:mod:`textgen.forms.wording`), read as people write it."""

from __future__ import annotations

import pytest

from textgen.forms import form_keys
from textgen.forms.tang import TangForm
from textgen.forms.wording import parse_form_request

ASKED = [
    ("写一首七言绝句，题为春日，藏头春夏秋冬",
     {"kind": "jueju", "chars_per_line": 7, "title": "春日", "acrostic": "春夏秋冬"}),
    ("五言律诗 秋夜 押平水韵", {"kind": "lushi", "chars_per_line": 5, "title": "秋夜", "rhyme": True}),
    ("a seven-character quatrain titled 春日", {"kind": "jueju", "chars_per_line": 7, "title": "春日"}),
    ("请写一首五绝，以月为题，押韵", {"kind": "jueju", "chars_per_line": 5, "title": "月", "rhyme": True}),
    ("七律 登高 平起 不重字", {"kind": "lushi", "chars_per_line": 7, "title": "登高", "tones": "平起",
                          "no_repeat": True}),
    ("七言绝句《山行》仄起，押新韵", {"kind": "jueju", "chars_per_line": 7, "title": "山行", "tones": "仄起",
                               "rhyme": True}),
    ("写一首绝句，含月、江", {"kind": "jueju", "chars_per_line": 5, "keywords": ["月", "江"]}),
    ("写一首藏头诗，藏头春夏秋冬", {"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}),
    ("藏头诗：江山如画风月无边", {"kind": "lushi", "chars_per_line": 5, "acrostic": "江山如画风月无边"}),  # 8 heads
    ("藏头诗：江山如画风月", None),  # six heads name neither form
    ("帮我写一首七言诗，题目是江雪", {"kind": "jueju", "chars_per_line": 7, "title": "江雪"}),
    ("写一首关于梅花的五言绝句", {"kind": "jueju", "chars_per_line": 5, "title": "梅花"}),
    ("五言绝句 题：秋思 讲平仄", {"kind": "jueju", "chars_per_line": 5, "title": "秋思", "tones": True}),
    ("给我来首七律吧，题曰秋兴，要合格律", {"kind": "lushi", "chars_per_line": 7, "title": "秋兴", "tones": True}),
    ("write a five-character regulated verse called 秋思, rhyming, with tones",
     {"kind": "lushi", "chars_per_line": 5, "title": "秋思", "rhyme": True, "tones": True}),
    ("Compose a jueju with acrostic 春夏秋冬", {"kind": "jueju", "chars_per_line": 5, "acrostic": "春夏秋冬"}),
    ("a heptasyllabic quatrain entitled 山居", {"kind": "jueju", "chars_per_line": 7, "title": "山居"}),
    ("A 7-character lushi titled 秋兴 with the words 月 and 江",
     {"kind": "lushi", "chars_per_line": 7, "title": "秋兴", "keywords": ["月", "江"]}),
    ("Please write a quatrain, no repeated characters", {"kind": "jueju", "chars_per_line": 5, "no_repeat": True}),
    ("五言律诗", {"kind": "lushi", "chars_per_line": 5}),
]
NOT_ASKED = ["春眠不觉晓", "床前明月光，疑是地上霜。", "Tell me a story", "hello",
             "今天天气很好", "帮我写首关于梅花的诗", ""]


@pytest.mark.parametrize(("text", "form"), ASKED)
def test_a_request_in_words_is_the_form_it_names(text, form):
    asked = parse_form_request(text)
    if form is None:
        assert asked is None
        return
    assert asked is not None and asked.form == form
    assert asked.ignored == [], asked.ignored  # every word of these was read


@pytest.mark.parametrize("text", NOT_ASKED)
def test_text_that_names_no_form_is_a_plain_continuation(text):
    assert parse_form_request(text) is None


def test_the_words_read_and_the_words_left_are_reported():
    asked = parse_form_request("写一首七言绝句，题为春日，藏头春夏秋冬，要有气势 please")
    assert asked.understood == ["七言绝句", "题为春日", "藏头春夏秋冬"]
    assert asked.ignored == ["要有气势"]


def test_a_rhyme_book_is_passed_on_only_where_the_form_takes_one():
    plain = parse_form_request("五言律诗 秋夜 押平水韵", form_fields=form_keys(TangForm))
    if "book" in form_keys(TangForm):  # once the form chooses its rhyme book
        assert plain.form["book"] == "平水韵" and plain.notes == []
    else:
        assert "book" not in plain.form and "平水韵" in plain.notes[0]
    booked = parse_form_request("五言律诗 秋夜 押平水韵", form_fields={"book"})
    assert booked.form["book"] == "平水韵" and booked.notes == []
    assert parse_form_request("七绝 押新韵", form_fields={"book"}).form["book"] == "中华新韵"
    assert parse_form_request("七绝 押新韵").notes == []  # the book this server rhymes by


def test_a_tune_table_plugs_in():
    """Once 词 land, a tune's name is its form: the table is the caller's."""
    tunes = {"浣溪沙": {"kind": "ci", "tune": "浣溪沙"}}
    asked = parse_form_request("填一首浣溪沙，题为春恨", tunes=tunes)
    assert asked.form == {"kind": "ci", "tune": "浣溪沙", "title": "春恨"}
    assert parse_form_request("填一首浣溪沙") is None  # no table, no tune


def test_the_parser_is_deterministic():
    text = "写一首七言绝句，题为春日，藏头春夏秋冬"
    assert all(parse_form_request(text).form == parse_form_request(text).form for _ in range(3))
