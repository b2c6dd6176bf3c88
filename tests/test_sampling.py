"""The sampler: pure sampling functions, parameter checks, UTF-8 safety, seeds, stops, batching."""

import pytest
import torch
from conftest import UNTRAINED_TEXT

from textgen.export import export_model, load_export
from textgen.sampling import (
    DecodeBatch,
    SamplingError,
    SamplingParams,
    apply_repetition_penalty,
    generate,
    sample_tokens,
)


def row_settings(B, temperature=1.0, top_k=0, top_p=1.0):
    return (torch.full((B,), float(temperature)), torch.full((B,), top_k), torch.full((B,), float(top_p)))


def test_temperature_zero_top_k_one_and_tiny_top_p_are_greedy():
    logits = torch.randn(6, 50)
    best = logits.argmax(-1)
    u = torch.rand(6)
    assert torch.equal(sample_tokens(logits, *row_settings(6, temperature=0), u), best)
    assert torch.equal(sample_tokens(logits, *row_settings(6, top_k=1), u), best)
    assert torch.equal(sample_tokens(logits, *row_settings(6, top_p=1e-6), u), best)


def test_a_row_draws_the_same_token_whatever_its_neighbours_truncate():
    logits = torch.randn(1, 300)
    for u in torch.linspace(0, 0.999, 40):
        alone = sample_tokens(logits, *row_settings(1), u.repeat(1))
        for top_k, top_p in ((5, 1.0), (0, 0.5)):
            mixed = sample_tokens(logits.repeat(2, 1), torch.ones(2), torch.tensor([0, top_k]),
                                  torch.tensor([1.0, top_p]), u.repeat(2))
            assert mixed[0] == alone[0]
            truncated_alone = sample_tokens(logits, torch.ones(1), torch.tensor([top_k]), torch.tensor([top_p]),
                                            u.repeat(1))
            assert mixed[1] == truncated_alone[0]


def test_masked_tokens_are_never_drawn_and_rows_keep_their_settings():
    logits = torch.zeros(2, 10)
    logits[:, 5:] = float("-inf")
    temperature = torch.tensor([1.0, 0.0])
    for u in torch.linspace(0, 0.999, 50):
        drawn = sample_tokens(logits, temperature, torch.tensor([0, 0]), torch.tensor([1.0, 1.0]), u.repeat(2))
        assert drawn[0] < 5 and drawn[1] == 0


def test_inverse_cdf_draw_follows_the_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().repeat(20000, 1)
    drawn = sample_tokens(logits, *row_settings(20000), torch.rand(20000, generator=torch.Generator().manual_seed(0)))
    freq = torch.bincount(drawn, minlength=4).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_top_k_and_top_p_truncate():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    u = torch.rand(4000, generator=torch.Generator().manual_seed(1))
    assert set(sample_tokens(logits, *row_settings(4000, top_k=2), u).tolist()) == {0, 1}
    assert set(sample_tokens(logits, *row_settings(4000, top_p=0.7), u).tolist()) == {0, 1}


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 2.0]])
    seen = torch.tensor([[True, True, False]])
    out = apply_repetition_penalty(logits, seen, torch.tensor([2.0]))
    assert out.tolist() == [[1.0, -2.0, 2.0]]


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("n", 0), ("n", 17),
    ("max_new_chars", -5), ("repetition_penalty", 0.0), ("seed", -1), ("stop", ["a"] * 9), ("stop", [""]),
    ("temperature", float("nan")),
])
def test_bad_parameters_name_their_field(field, value):
    with pytest.raises(SamplingError) as error:
        SamplingParams(**{field: value})
    assert error.value.field == field and field in str(error.value)


def test_output_is_always_valid_utf8_with_exact_length(untrained):
    samples = generate(untrained, "春", SamplingParams(max_new_chars=60, temperature=1.5, n=16, seed=3))
    for sample in samples:
        assert "\ufffd" not in sample.text
        sample.text.encode("utf-8")  # no lone surrogates
        assert len(sample.text) == sample.generated_chars == 60
        assert sample.finish_reason == "length"


def test_pieces_never_seen_in_training_are_never_sampled(untrained, tmp_path):
    tok = untrained.tokenizer
    chinese = set("春眠不觉晓，处处闻啼鸟。")
    masked = [i for i, b in enumerate(tok.byte_values) if b >= 0]
    masked += [i for i, text in enumerate(tok.pieces) if text in chinese]
    path = export_model(tmp_path / "masked", untrained.model, tok, name="masked", corpus="test",
                        context_chars=16, target_chars=12, untrained_pieces=masked)
    loaded = load_export(path)
    assert loaded.info.untrained_pieces == sorted(masked)
    english = set(UNTRAINED_TEXT) - chinese
    # An untrained model spreads its probability evenly: without the mask, a third of these
    # characters would come from byte pieces or Chinese.
    for sample in generate(loaded, "the", SamplingParams(max_new_chars=80, temperature=1.5, n=8, seed=5)):
        assert set(sample.text[len("the"):]) <= english, sample.text
    # A prompt in untrained characters still samples (the mask only narrows the choice).
    assert generate(loaded, "春眠", SamplingParams(max_new_chars=10, seed=1))[0].generated_chars == 10
    # Without the field (exports before it), nothing is masked: Chinese comes back.
    texts = "".join(s.text for s in generate(untrained, "the", SamplingParams(max_new_chars=80, temperature=1.5,
                                                                             n=8, seed=5)))
    assert set(texts) & chinese


def test_same_seed_same_text_alone_or_batched(untrained):
    params = SamplingParams(max_new_chars=40, seed=11, temperature=1.0, top_k=20)
    alone = generate(untrained, "the", params)[0].text
    batch = DecodeBatch(untrained)
    rows = [batch.make_row("fox", SamplingParams(max_new_chars=25, seed=5, top_p=0.9)),
            batch.make_row("the", params),
            batch.make_row("", SamplingParams(max_new_chars=50, temperature=0))]
    batch.add(rows[:1])
    batch.step()  # the seeded row joins a batch that is already running
    batch.add(rows[1:])
    while len(batch):
        batch.step()
    assert rows[1].text == alone
    assert generate(untrained, "the", params)[0].text == alone
    assert generate(untrained, "the", SamplingParams(max_new_chars=40, seed=12))[0].text != alone


def test_n_samples_differ_and_greedy_samples_agree(untrained):
    texts = [s.text for s in generate(untrained, "", SamplingParams(max_new_chars=30, n=4, seed=1))]
    assert len(set(texts)) == 4
    greedy = [s.text for s in generate(untrained, "", SamplingParams(max_new_chars=30, n=3, temperature=0))]
    assert len(set(greedy)) == 1


def test_stop_strings_end_the_text_and_are_not_returned(untrained):
    full = generate(untrained, "", SamplingParams(max_new_chars=80, seed=2))[0].text
    stop = full[30:32]
    first = full.find(stop)
    streamed = []
    sample = generate(untrained, "", SamplingParams(max_new_chars=80, seed=2, stop=[stop, "\x00never"]),
                      on_text=lambda i, t: streamed.append(t))[0]
    assert sample.finish_reason == "stop"
    assert sample.text == full[:first]
    assert "".join(streamed) == sample.text  # the held-back prefix of a stop string never leaked


def test_streamed_text_equals_final_text_and_logprobs_are_reported(untrained):
    streamed = []
    sample = generate(untrained, "dog", SamplingParams(max_new_chars=50, seed=4, return_logprobs=True),
                      on_text=lambda i, t: streamed.append(t))[0]
    assert "".join(streamed) == sample.text
    assert sample.logprob is not None and sample.logprob < 0


def test_generation_continues_past_the_training_window(untrained):
    # target_chars is 12: a 100-character sample re-reads its context 8 times.
    sample = generate(untrained, "the quick", SamplingParams(max_new_chars=100, temperature=0))[0]
    assert sample.generated_chars == 100


def test_zero_characters_and_unrepresentable_prompt(untrained):
    assert generate(untrained, "x", SamplingParams(max_new_chars=0))[0].text == ""
    with pytest.raises(SamplingError) as error:
        generate(untrained, "bad \ud800 surrogate", SamplingParams(max_new_chars=5))
    assert error.value.field == "prompt"
