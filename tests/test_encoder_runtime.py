"""The context encoder on onnxruntime, chosen at load time: the same function as torch's encoder,
a row's result independent of its batch, and a bad ``encoder_runtime`` a clear error naming the option."""

import json

import pytest
import torch
from conftest import cli, corpus_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textgen.encoder_runtime import EncoderRuntimeError, OnnxBidirectionalRNN, resolve_encoder_runtime
from textgen.evaluation import evaluate_text
from textgen.export import export_model, load_export
from textgen.models import EncoderConfig, ModelConfig, Seq2SeqLM
from textgen.sampling import DecodeBatch, SamplingParams
from textgen.tokenizer import CharTokenizer


def _states(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM, nn.RNN])
def test_the_onnx_encoder_computes_what_torch_computes(cell):
    torch.manual_seed(0)
    rnn = cell(24, 40, num_layers=2, batch_first=True, bidirectional=True).eval()
    onnx_rnn = OnnxBidirectionalRNN(rnn)
    x, lengths = torch.randn(5, 9, 24), torch.tensor([9, 3, 7, 1, 9])
    with torch.no_grad():
        # every row its full length
        (expected, expected_state), (got, got_state) = rnn(x), onnx_rnn(x)
        assert torch.allclose(got, expected, atol=1e-5)
        for e, g in zip(_states(expected_state), _states(got_state)):
            assert g.shape == e.shape and torch.allclose(g, e, atol=1e-5)
        # rows of different lengths, packed as torch takes them, or padded with their lengths
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected, expected_state = rnn(packed)
        expected = pad_packed_sequence(expected, batch_first=True, total_length=9)[0]
        got_packed, got_packed_state = onnx_rnn(packed)
        got, got_state = onnx_rnn(x, lengths=lengths)
        assert torch.allclose(pad_packed_sequence(got_packed, batch_first=True, total_length=9)[0], expected, atol=1e-5)
        assert torch.allclose(got, expected, atol=1e-5)
        assert bool((got[1, 3:] == 0).all())  # nothing past a row's length
        for e, g, gp in zip(_states(expected_state), _states(got_state), _states(got_packed_state)):
            assert torch.allclose(g, e, atol=1e-5) and torch.allclose(gp, e, atol=1e-5)


def test_an_onnx_encoder_row_does_not_depend_on_the_rest_of_its_batch():
    torch.manual_seed(0)
    onnx_rnn = OnnxBidirectionalRNN(nn.GRU(16, 32, batch_first=True, bidirectional=True).eval())
    x, lengths = torch.randn(6, 11, 16), torch.tensor([11, 4, 11, 9, 1, 6])
    batched, batched_h = onnx_rnn(x, lengths=lengths)
    for i in range(6):
        alone, alone_h = onnx_rnn(x[i:i + 1], lengths=lengths[i:i + 1])
        assert torch.equal(alone[0], batched[i]) and torch.equal(alone_h[:, 0], batched_h[:, i])


def test_the_onnx_encoder_takes_no_initial_state_and_no_unidirectional_rnn():
    rnn = nn.GRU(8, 8, batch_first=True, bidirectional=True).eval()
    with pytest.raises(EncoderRuntimeError, match="takes no initial state"):
        OnnxBidirectionalRNN(rnn)(torch.randn(1, 3, 8), torch.zeros(2, 1, 8))
    with pytest.raises(EncoderRuntimeError, match="bidirectional, batch-first"):
        OnnxBidirectionalRNN(nn.GRU(8, 8, batch_first=True))


def test_a_tiny_model_samples_and_evaluates_alike_on_either_runtime(tiny_tang, tmp_path):
    by_runtime = {runtime: load_export(tiny_tang, encoder_runtime=runtime) for runtime in ("torch", "onnxruntime")}
    assert by_runtime["onnxruntime"].encoder_runtime == "onnxruntime"
    assert isinstance(by_runtime["onnxruntime"].model.encoder, OnnxBidirectionalRNN)
    texts = {}
    for runtime, loaded in by_runtime.items():
        # 60 characters re-read the context several times (every target_chars tokens)
        batch = DecodeBatch(loaded)
        rows = [batch.make_row(prompt, SamplingParams(max_new_chars=60, seed=i, temperature=0.0))
                for i, prompt in enumerate(["春", "秋月", "山"])]
        batch.add(rows)
        while len(batch):
            batch.step()
        texts[runtime] = [row.text for row in rows]
    assert texts["onnxruntime"] == texts["torch"] and all(len(t) == 60 for t in texts["torch"])

    text = corpus_file("tang").read_text(encoding="utf-8")[200_000:205_000]
    (tmp_path / "val.txt").write_text(text, encoding="utf-8")
    out = cli("evaluate", f"checkpoint={tiny_tang}", f"file={tmp_path / 'val.txt'}", "json=true",
              "encoder_runtime=onnxruntime")
    result = json.loads(out.stdout)
    assert result["encoder_runtime"] == "onnxruntime"
    assert result["bpc"] == pytest.approx(evaluate_text(by_runtime["torch"], text).bpc, rel=1e-5)
    sample = cli("sample", f"checkpoint={tiny_tang}", "prompt=春", "max_new_chars=30", "seed=1",
                 "encoder_runtime=onnxruntime")
    assert sample.stdout.startswith("春") and len(sample.stdout.strip()) == 31


def test_a_model_without_an_encoder_loads_on_either_runtime(tmp_path):
    tokenizer = CharTokenizer.train_on_text("abcdefgh " * 20)
    model = Seq2SeqLM(ModelConfig(vocab_size=tokenizer.vocab_size, embedding=8, hidden=16, layers=1,
                                  encoder=EncoderConfig(layers=0)))
    path = export_model(tmp_path / "char-rnn", model, tokenizer, name="char-rnn", corpus="test",
                        context_chars=8, target_chars=8)
    loaded = load_export(path, encoder_runtime="onnxruntime")
    batch = DecodeBatch(loaded)
    row = batch.make_row("abc", SamplingParams(max_new_chars=12, seed=0))
    batch.add([row])
    while len(batch):
        batch.step()
    assert len(row.text) == 12


def test_bad_encoder_runtime_values_name_the_option(tiny_tang):
    with pytest.raises(EncoderRuntimeError, match="`encoder_runtime` must be one of torch, onnxruntime, auto, got 'tvm'"):
        resolve_encoder_runtime("tvm", "cpu")
    with pytest.raises(EncoderRuntimeError, match="`encoder_runtime=onnxruntime` runs on CPU only"):
        resolve_encoder_runtime("onnxruntime", "cuda")
    assert resolve_encoder_runtime("auto", "cpu") == "auto" and resolve_encoder_runtime("auto", "cuda") == "torch"
    result = cli("sample", f"checkpoint={tiny_tang}", "encoder_runtime=tvm", check=False)
    assert result.returncode == 2
    assert "`encoder_runtime` must be one of torch, onnxruntime, auto, got 'tvm'" in result.stderr
