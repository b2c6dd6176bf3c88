"""best_of and per-character log-probabilities of the sampler, checked against the model's own scoring.

The reference is :func:`textgen.evaluation.continuation_logprobs`, which scores the returned text
with the model's forward pass over training-shaped windows, not the sampler's step-by-step numbers.
"""

from __future__ import annotations

import math

import pytest
from test_forms import poem_problems

from textgen.evaluation import continuation_logprobs
from textgen.export import export_model, load_export
from textgen.forms import prepare_form
from textgen.sampling import SamplingError, SamplingParams, generate


@pytest.fixture(scope="module")
def marked(untrained, tmp_path_factory):
    """The untrained model of test_sampling, with the single-byte pieces marked untrained, as a
    trained export has them: so a character the vocabulary holds is always written as its piece
    (the token ids are the text's), while characters outside it still come as UTF-8 byte pieces."""
    tok = untrained.tokenizer
    ascii_bytes = [i for i, value in enumerate(tok.byte_values) if 0 <= value < 0x80]
    path = export_model(tmp_path_factory.mktemp("best-of") / "untrained", untrained.model, tok,
                        name="untrained", corpus="test", context_chars=16, target_chars=12,
                        untrained_pieces=ascii_bytes)
    return load_export(path)


def per_char(loaded, prompt: str, text: str) -> float:
    """The model's mean log-probability per character of ``text`` after ``prompt``, scored independently."""
    values = continuation_logprobs(loaded, prompt, text)
    assert len(values) == len(text)
    return sum(values) / len(values)


def test_chosen_character_logprobs_are_the_models(marked):
    # 70 characters cross several 12-token windows; the untrained model writes byte-piece characters too.
    samples = generate(marked, "dog", SamplingParams(max_new_chars=70, temperature=1.3, n=3, seed=5,
                                                         return_logprobs=True))
    assert any(len(s.text.encode()) > len(s.text) for s in samples)  # some character is several bytes
    for sample in samples:
        reference = continuation_logprobs(marked, "dog", sample.text)
        assert sample.char_logprobs == pytest.approx(reference, abs=2e-4)
        assert sample.logprob == pytest.approx(math.fsum(reference), abs=5e-3)


def test_a_stop_string_is_not_scored(marked):
    full = generate(marked, "", SamplingParams(max_new_chars=40, seed=2, return_logprobs=True))[0]
    stop = full.text[20:22]
    cut = generate(marked, "", SamplingParams(max_new_chars=40, seed=2, return_logprobs=True, stop=[stop]))[0]
    assert cut.finish_reason == "stop" and len(cut.char_logprobs) == len(cut.text) < 22
    assert cut.char_logprobs == pytest.approx(full.char_logprobs[: len(cut.text)])


def test_best_of_returns_the_candidates_the_model_scores_highest(marked):
    prompt, seed = "the ", 11
    # best_of=8 draws the same 8 candidates as n=8 (candidate i has seed + i), then keeps the best 3.
    candidates = generate(marked, prompt, SamplingParams(max_new_chars=30, n=8, seed=seed))
    scores = sorted(((per_char(marked, prompt, c.text), c.text) for c in candidates), reverse=True)
    best = generate(marked, prompt, SamplingParams(max_new_chars=30, n=3, best_of=8, seed=seed))
    assert [s.text for s in best] == [text for _, text in scores[:3]]
    assert scores[0][0] - scores[-1][0] > 0.05  # the ranking is not a tie broken by order
    for sample in best:  # the reported numbers are the model's
        assert sample.logprob_per_char == pytest.approx(per_char(marked, prompt, sample.text), abs=2e-4)
        assert sample.char_logprobs is not None


def test_best_of_is_reproducible_with_a_seed(marked):
    params = SamplingParams(max_new_chars=25, n=2, best_of=6, seed=3)
    first = generate(marked, "a", params)
    assert [s.text for s in first] == [s.text for s in generate(marked, "a", params)]
    assert len({s.index for s in first}) == 2 and all(0 <= s.index < 6 for s in first)  # which candidates won


def test_best_of_with_a_form_keeps_the_form_on_every_row(tang):
    prepared = prepare_form({"kind": "jueju", "chars_per_line": 5, "title": "春日"}, tang, "")
    params = SamplingParams(n=2, best_of=8, seed=7, temperature=1.0)
    candidates = generate(tang, prepared.prompt, SamplingParams(n=8, seed=7, temperature=1.0),
                          constraint=lambda i: prepared.new_constraint())
    best = generate(tang, prepared.prompt, params, constraint=lambda i: prepared.new_constraint())
    for sample in candidates + best:
        assert sample.finish_reason == "form_complete"
        assert poem_problems(sample.text.strip("\n"), 5, 4) == [], sample.text
    ranked = sorted(candidates, key=lambda c: -per_char(tang, prepared.prompt, c.text))
    assert [s.text for s in best] == [c.text for c in ranked[:2]]


def test_top_logprobs_rank_whole_characters(marked):
    sample = generate(marked, "the", SamplingParams(max_new_chars=20, seed=1, top_logprobs=3))[0]
    assert len(sample.top_logprobs) == len(sample.text) == len(sample.char_logprobs)
    listed = 0
    for char, top, chosen in zip(sample.text, sample.top_logprobs, sample.char_logprobs):
        values = list(top.values())
        assert len(top) == 3 and values == sorted(values, reverse=True)
        assert all(len(key) == 1 for key in top)
        if char in top:  # the chosen character among the most likely: the same number
            assert top[char] == pytest.approx(chosen, abs=1e-5)
            listed += 1
        elif char in marked.tokenizer.pieces:  # a whole character outside the top 3 is less likely
            assert chosen <= min(values) + 1e-5
    assert listed > 0


@pytest.mark.parametrize("kwargs,field", [
    ({"n": 3, "best_of": 2}, "best_of"), ({"best_of": 17}, "best_of"), ({"best_of": True}, "best_of"),
    ({"top_logprobs": 6}, "top_logprobs"), ({"top_logprobs": -1}, "top_logprobs"),
])
def test_bad_best_of_and_top_logprobs_name_their_field(kwargs, field):
    with pytest.raises(SamplingError) as error:
        SamplingParams(**kwargs)
    assert error.value.field == field and f"`{field}`" in str(error.value)
