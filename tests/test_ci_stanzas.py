"""The stanzas (阕) read off a tune's shape, against what the 词谱 says of well-known tunes."""

from __future__ import annotations

import pytest

from textgen.forms.ci.stanzas import stanzas, stanzas_api
from textgen.forms.ci.tunebook import tune_book

KNOWN = {  # the main shape's sentence lengths, stanza by stanza, as any 词谱 gives them
    "浣溪沙": ([7, 7, 7], [7, 7, 7]),
    "鹧鸪天": ([7, 7, 7, 7], [3, 3, 7, 7, 7]),  # 换头: the second stanza opens with two 3s
    "西江月": ([6, 6, 7, 6], [6, 6, 7, 6]),
    "菩萨蛮": ([7, 7, 5, 5], [5, 5, 5, 5]),  # four rhyme groups, the change between the stanzas among them
    "清平乐": ([4, 5, 7, 6], [6, 6, 6, 6]),  # 仄韵 above, 平韵 below: no common tail, the rhyme change marks it
    "水调歌头": ([5, 5, 6, 5, 6, 6, 5, 5, 5], [3, 3, 3, 6, 5, 6, 6, 5, 5, 5]),
    "念奴娇": ([4, 5, 4, 7, 6, 4, 4, 5, 4, 6], [6, 4, 5, 7, 6, 4, 4, 5, 4, 6]),
    "满江红": ([4, 3, 4, 3, 4, 4, 7, 7, 3, 5, 3], [3, 3, 3, 3, 5, 4, 7, 7, 3, 5, 3]),
    "诉衷情": ([7, 5, 6, 5], [3, 3, 3, 4, 4, 4]),  # halves that end unlike: the line end nearest the middle
}


@pytest.mark.parametrize("tune", KNOWN)
def test_known_tunes_divide_where_the_ci_pu_does(tune):
    shape = tune_book().tunes[tune].variants[0]
    upper, lower = KNOWN[tune]
    lengths = [s.length for s in shape.sentences]
    assert lengths == upper + lower  # the tune book's own shape, so the test reads the real data
    found = stanzas(shape)
    assert [[s.length for s in shape.sentences[st.start:st.start + st.sentences]] for st in found] == [upper, lower]
    assert [st.chars for st in found] == [sum(upper), sum(lower)]


def test_a_single_stanza_tune_is_not_divided():
    shape = tune_book().tunes["如梦令"].variants[0]
    assert [s.length for s in shape.sentences] == [6, 6, 5, 6, 2, 2, 6]
    assert stanzas_api(shape) == [{"name": "全阕", "start": 0, "sentences": 7, "lines": 6, "chars": 33}]


def test_every_shape_divides_at_a_line_end_into_halves_of_like_length():
    for tune in tune_book().tunes.values():
        for shape in tune.variants:
            found = stanzas(shape)
            assert sum(st.sentences for st in found) == len(shape.sentences)
            assert sum(st.lines for st in found) == sum(s.line_end for s in shape.sentences)
            if len(found) == 2:
                assert shape.sentences[found[1].start - 1].line_end, tune.name
                assert abs(found[0].chars - found[1].chars) <= 0.2 * shape.chars, tune.name
            api = stanzas_api(shape)
            assert [st["name"] for st in api] == (["上阕", "下阕"] if len(found) == 2 else ["全阕"])
