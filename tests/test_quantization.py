"""Int8 weights chosen at load time: they sample and evaluate like float, rows stay independent,
and a bad ``quantize`` value is a clear error naming the option."""

import json

import pytest
import torch
from conftest import cli, corpus_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textgen.evaluation import evaluate_text
from textgen.export import load_export
from textgen.models import ModelConfig, Seq2SeqLM
from textgen.quantization import Int8Linear, Int8RNN, QuantizeError, quantize_int8, resolve_quantize
from textgen.sampling import DecodeBatch, SamplingParams


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM, nn.RNN])
def test_int8_recurrent_layers_follow_the_float_ones(cell):
    torch.manual_seed(0)
    rnn = cell(24, 40, num_layers=2, batch_first=True).eval()
    q = Int8RNN(rnn)
    x, lengths = torch.randn(5, 9, 24), torch.tensor([9, 3, 7, 1, 9])
    with torch.no_grad():
        for inputs in (x, pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)):
            (expected, expected_state), (got, got_state) = rnn(inputs), q(inputs)
            if not isinstance(inputs, torch.Tensor):
                expected, got = pad_packed_sequence(expected, batch_first=True)[0], pad_packed_sequence(got, batch_first=True)[0]
            assert torch.allclose(got, expected, atol=0.05)
            for e, g in zip(*(s if isinstance(s, tuple) else (s,) for s in (expected_state, got_state))):
                assert torch.allclose(g, e, atol=0.05)


def test_an_int8_row_does_not_depend_on_the_rest_of_its_batch():
    torch.manual_seed(0)
    linear = Int8Linear.from_float(nn.Linear(64, 32))
    x = torch.randn(6, 64)
    x[3] *= 1000  # one row of large values must not coarsen the others' quantization
    alone = torch.cat([linear(x[i:i + 1]) for i in range(6)])
    assert torch.equal(linear(x), alone)


def test_the_adaptive_softmax_stays_a_distribution():
    torch.manual_seed(0)
    model = quantize_int8(Seq2SeqLM(ModelConfig(vocab_size=60, hidden=32, embedding=16, cell="gru",
                                                adaptive_cutoffs=[20, 40], encoder={"hidden": 16})).eval())
    with torch.inference_mode():
        state = model.start(torch.randint(4, 60, (3, 10)))
        logprobs, _ = model.step(torch.randint(4, 60, (3,)), state)
    assert torch.allclose(logprobs.exp().sum(-1), torch.ones(3), atol=1e-4)


def test_bad_quantize_values_name_the_option():
    with pytest.raises(QuantizeError, match="`quantize` must be one of none, int8, auto, got 'int4'"):
        resolve_quantize("int4", "cpu")
    with pytest.raises(QuantizeError, match="`quantize=int8` runs on CPU only"):
        resolve_quantize("int8", "cuda")
    # auto stays auto on CPU (load_export times the candidates: tests/test_runtime_choice.py)
    assert resolve_quantize("auto", "cpu") == "auto" and resolve_quantize("auto", "cuda") == "none"


def test_a_quantized_tiny_model_samples_evaluates_and_keeps_seeds(tiny_tang, tmp_path):
    loaded = load_export(tiny_tang, quantize="int8")
    assert loaded.quantize == "int8"
    # A seeded row writes the same text alone or batched with other rows, as in float.
    params = SamplingParams(max_new_chars=40, seed=7)
    alone = DecodeBatch(loaded)
    row = alone.make_row("春", params)
    alone.add([row])
    while len(alone):
        alone.step()
    batch = DecodeBatch(loaded)
    rows = [batch.make_row(prompt, SamplingParams(max_new_chars=40, seed=i)) for i, prompt in enumerate("秋月山水")]
    batched = batch.make_row("春", params)
    batch.add([*rows[:2], batched, *rows[2:]])
    while len(batch):
        batch.step()
    assert batched.text == row.text and len(row.text) == 40

    sample = cli("sample", f"checkpoint={tiny_tang}", "prompt=春", "max_new_chars=30", "seed=1", "quantize=int8")
    assert sample.stdout.startswith("春") and len(sample.stdout.strip()) == 31

    text = corpus_file("tang").read_text(encoding="utf-8")[200_000:210_000]
    (tmp_path / "val.txt").write_text(text, encoding="utf-8")
    out = cli("evaluate", f"checkpoint={tiny_tang}", f"file={tmp_path / 'val.txt'}", "json=true", "quantize=int8")
    result = json.loads(out.stdout)
    assert result["quantize"] == "int8"
    assert result["bpc"] == pytest.approx(evaluate_text(load_export(tiny_tang), text).bpc, rel=0.01)


def test_the_command_line_rejects_a_bad_quantize_value(tiny_tang):
    for module, extra in (("sample", []), ("evaluate", [f"file={corpus_file('tang')}"])):
        result = cli(module, f"checkpoint={tiny_tang}", "quantize=int4", *extra, check=False)
        assert result.returncode == 2
        assert "`quantize` must be one of none, int8, auto, got 'int4'" in result.stderr


@pytest.mark.parametrize(("variable", "field", "bad", "good"), [
    ("TEXTGEN_QUANTIZE", "quantize", "int4", "int8"),
    ("TEXTGEN_ENCODER_RUNTIME", "encoder_runtime", "tvm", "torch"),  # textgen/encoder_runtime.py
])
def test_the_server_settings_of_the_cpu_paths_are_checked(monkeypatch, variable, field, bad, good):
    from pydantic import ValidationError

    from server.settings import load_settings

    monkeypatch.setenv(variable, bad)
    with pytest.raises(ValidationError, match=field):
        load_settings()
    monkeypatch.setenv(variable, good)
    assert getattr(load_settings(), field) == good
