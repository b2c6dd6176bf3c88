"""The model: step() equals the teacher-forced forward, configs check themselves, loss falls."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textgen.models import DecoderState, EncoderConfig, ModelConfig, Seq2SeqLM
from textgen.models.peephole import PeepholeLSTM

VOCAB = 40


def tiny(cell: str, encoder_layers: int, **extra) -> Seq2SeqLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, cell=cell, embedding=16, hidden=24, layers=2, dropout=0.0,
                         encoder=EncoderConfig(layers=encoder_layers, hidden=12), **extra)
    return Seq2SeqLM(config).eval()


def step_by_step(model: Seq2SeqLM, context, lengths, inputs) -> torch.Tensor:
    """Logits (B, T, V) from ``start`` and one ``step`` per input character, as sampling runs."""
    state, steps = model.start(context, lengths), []
    for t in range(inputs.shape[1]):
        logits, state = model.step(inputs[:, t], state)
        steps.append(logits)
    return torch.stack(steps, dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("encoder_layers", [0, 1, 2])
def test_step_by_step_equals_full_forward(cell, encoder_layers):
    model = tiny(cell, encoder_layers, tie_weights=encoder_layers == 1)
    context = torch.randint(4, VOCAB, (3, 9))
    lengths = torch.tensor([9, 5, 1])  # rows of different context lengths (packed)
    inputs = torch.randint(4, VOCAB, (3, 11))
    with torch.no_grad():
        full, _ = model(context, inputs, context_lengths=lengths)  # (B, T, V)
        stepped = step_by_step(model, context, lengths, inputs)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_layer_norm_stack_steps_like_its_forward_and_differs_from_the_fused_rnn(cell, encoder_layers):
    model = tiny(cell, encoder_layers, layer_norm=True)
    assert len(model.decoder.layers) == 2 and model.decoder.layers[1].weight_ih_l0.shape[1] == 24
    context = torch.randint(4, VOCAB, (3, 9))
    lengths = torch.tensor([9, 5, 1])  # packed burn-in for the decoder-only model
    inputs = torch.randint(4, VOCAB, (3, 11))
    with torch.no_grad():
        full, _ = model(context, inputs, context_lengths=lengths)
        assert model.start(context, lengths).hidden.shape == (2, 3, 24)
        stepped = step_by_step(model, context, lengths, inputs)
        fused, _ = tiny(cell, encoder_layers)(context, inputs, context_lengths=lengths)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full, fused, atol=1e-3)
    block = model.decoder.layers[1].weight_hh_l0[:24]  # the stack's layers get the orthogonal init too
    torch.testing.assert_close(block @ block.T, torch.eye(24), atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder_layers, extra", [(1, {}), (0, {"layer_norm": True})])
def test_padding_a_context_does_not_change_its_result(encoder_layers, extra):
    model = tiny("lstm", encoder_layers, **extra)
    context = torch.randint(4, VOCAB, (1, 5))
    padded = torch.cat([context, torch.full((1, 4), 3)], dim=1)
    inputs = torch.randint(4, VOCAB, (1, 6))
    with torch.no_grad():
        a, _ = model(context, inputs)
        b, _ = model(padded, inputs, context_lengths=torch.tensor([5]))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_state_select_assign_and_cat_keep_rows_apart():
    model = tiny("lstm", 1)
    with torch.no_grad():
        state = model.start(torch.randint(4, VOCAB, (4, 6)))
        other = model.start(torch.randint(4, VOCAB, (2, 6)))
    joined = DecoderState.cat([state, other])
    assert joined.batch_size == 6
    torch.testing.assert_close(joined.select(torch.tensor([4, 5])).hidden, other.hidden)
    assigned = state.assign(torch.tensor([1, 3]), other)
    torch.testing.assert_close(assigned.select(torch.tensor([1, 3])).memory, other.memory)
    torch.testing.assert_close(assigned.select(torch.tensor([0, 2])).cell, state.select(torch.tensor([0, 2])).cell)


def test_config_rejects_bad_values_and_unknown_keys():
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(vocab_size=VOCAB, cell="transformer")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(vocab_size=VOCAB, dropout=1.5)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"vocab_size": VOCAB, "hiden": 3})
    config = ModelConfig(vocab_size=VOCAB, encoder=EncoderConfig(layers=0))
    assert ModelConfig.from_dict(config.to_dict()) == config and not config.has_encoder


def test_lstm_init_sets_forget_bias_and_orthogonal_recurrence():
    model = tiny("lstm", 1)
    H = model.config.hidden
    assert torch.all(model.decoder.bias_ih_l0[H:2 * H] == 1.0)
    block = model.decoder.weight_hh_l0[:H]
    torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_loss_falls_when_training_on_a_tiny_text(encoder_layers):
    torch.manual_seed(0)
    model = Seq2SeqLM(ModelConfig(vocab_size=VOCAB, embedding=16, hidden=32, layers=1, dropout=0.0,
                                  encoder=EncoderConfig(layers=encoder_layers, hidden=16)))
    pattern = torch.tensor([5, 6, 7, 8, 9, 10, 11, 12] * 8)
    context, inputs, targets = pattern[None, :8], pattern[None, 7:39], pattern[None, 8:40]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        _, loss = model(context, inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_adaptive_softmax_head_is_a_distribution_and_its_loss_matches_it(encoder_layers):
    model = tiny("lstm", encoder_layers, adaptive_cutoffs=[10, 25])
    context = torch.randint(4, VOCAB, (2, 7))
    inputs = torch.randint(4, VOCAB, (2, 9))
    targets = torch.randint(4, VOCAB, (2, 9))
    targets[1, -3:] = 3  # padding is ignored by the loss
    with torch.no_grad():
        logprobs, _ = model(context, inputs)  # (B, T, V) log-probabilities
        logits, loss = model(context, inputs, targets)
        state = model.start(context)
        first, _ = model.step(inputs[:, 0], state)
    assert logits is None  # the adaptive loss never builds full logits
    torch.testing.assert_close(logprobs.exp().sum(-1), torch.ones(2, 9), atol=1e-5, rtol=0)
    keep = targets != 3
    expected = -logprobs[keep].gather(1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first, logprobs[:, 0], atol=1e-5, rtol=1e-5)


def test_adaptive_cutoffs_are_checked():
    with pytest.raises(ValueError, match="adaptive_cutoffs"):
        ModelConfig(vocab_size=VOCAB, adaptive_cutoffs=[30, 20])
    with pytest.raises(ValueError, match="adaptive_cutoffs"):
        ModelConfig(vocab_size=VOCAB, adaptive_cutoffs=[VOCAB])
    with pytest.raises(ValueError, match="tie_weights"):
        ModelConfig(vocab_size=VOCAB, adaptive_cutoffs=[10], tie_weights=True)


def test_attention_residual_keeps_the_decoder_output():
    plain = tiny("gru", 1, attention_residual=False)
    residual = tiny("gru", 1)
    residual.load_state_dict(plain.state_dict())
    context, inputs = torch.randint(4, VOCAB, (2, 6)), torch.randint(4, VOCAB, (2, 5))
    with torch.no_grad():
        state = plain.start(context)
        out, _ = plain.decoder(plain.embedding(inputs), state.hidden)
        torch.testing.assert_close(residual._attend(out, state), out + plain._attend(out, state))


def test_configs_from_before_the_residual_option_keep_their_model():
    values = ModelConfig(vocab_size=VOCAB).to_dict()
    del values["attention_residual"]
    assert ModelConfig.from_dict(values).attention_residual is False
    assert ModelConfig(vocab_size=VOCAB).attention_residual is True


@pytest.mark.parametrize("packed", [False, True])
def test_a_peephole_lstm_with_closed_peepholes_computes_what_nn_lstm_does(packed):
    torch.manual_seed(0)
    reference = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True)
    peephole = PeepholeLSTM(5, 7, num_layers=2)
    missing = peephole.load_state_dict(reference.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(f"weight_{p}_l{k}" for p in ("ci", "cf", "co") for k in (0, 1))
    x = torch.randn(3, 6, 5)
    state = (torch.randn(2, 3, 7), torch.randn(2, 3, 7))
    if packed:  # rows of 6, 2 and 4 steps: each row's final state is the one at its length
        x = pack_padded_sequence(x, torch.tensor([6, 2, 4]), batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        (want, want_state), (got, got_state) = reference(x, state), peephole(x, state)
    if packed:
        want, got = pad_packed_sequence(want, batch_first=True)[0], pad_packed_sequence(got, batch_first=True)[0]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_state, want_state, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_a_peephole_decoder_steps_like_its_forward_and_its_peepholes_train(encoder_layers):
    model = tiny("lstm", encoder_layers, peephole=True)
    assert isinstance(model.decoder, PeepholeLSTM)
    torch.testing.assert_close(model.decoder.bias_ih_l0[24:48], torch.ones(24))  # the LSTM init applies
    context, lengths = torch.randint(4, VOCAB, (3, 9)), torch.tensor([9, 5, 1])
    inputs = torch.randint(4, VOCAB, (3, 11))
    with torch.no_grad():
        closed, _ = model(context, inputs, context_lengths=lengths)
        for name in ("weight_ci_l0", "weight_cf_l1", "weight_co_l1"):  # open the peepholes
            getattr(model.decoder, name).normal_()
        full, _ = model(context, inputs, context_lengths=lengths)
        stepped = step_by_step(model, context, lengths, inputs)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full, closed, atol=1e-3)  # the open peepholes change the output
    _, loss = model.train()(context, inputs, torch.randint(4, VOCAB, (3, 11)), context_lengths=lengths)
    loss.backward()
    peepholes = [getattr(model.decoder, f"weight_{p}_l{k}") for p in ("ci", "cf", "co") for k in (0, 1)]
    assert all(weight.grad.abs().sum() > 0 for weight in peepholes)


def test_peepholes_are_for_the_lstm_only():
    with pytest.raises(ValueError, match=r"\['peephole'\].*peephole only with cell=lstm"):
        ModelConfig(vocab_size=VOCAB, cell="gru", peephole=True)


NEWLINE = 5  # the line-break token of the layout tests


def layout_model(encoder_layers: int = 1, cell: str = "gru") -> Seq2SeqLM:
    """A tiny model with layout positions whose vectors are not zero (as after training)."""
    model = tiny(cell, encoder_layers, line_positions=4, column_positions=6, newline_id=NEWLINE)
    with torch.no_grad():
        for table in (model.line_embedding, model.column_embedding):
            table.weight.normal_()
    return model


@pytest.mark.parametrize("encoder_layers", [0, 1])
def test_layout_positions_count_lines_and_columns_as_sampling_reads_them(encoder_layers):
    model = layout_model(encoder_layers)
    BOS = 1
    # row 0 starts a document: [BOS] a b \n c | row 1 starts mid-document, then a blank line
    context = torch.tensor([[BOS, 9, 9, NEWLINE, 9, 9, 3, 3], [9, 9, NEWLINE, NEWLINE, 9, 9, 9, 9]])
    lengths = torch.tensor([6, 8])
    with torch.no_grad():
        state = model.start(context, lengths)
    # after all but the last context token: row 0 on line 1, column 1; row 1 on line 0 (the blank line
    # started a document), column 3
    assert state.layout.tolist() == [[1, 1, 0], [0, 3, 0]]
    inputs = torch.tensor([[9, NEWLINE, 9, 9, 9, 9, 9, 9, NEWLINE, NEWLINE, 9], [9] * 11])
    with torch.no_grad():
        full, _ = model(context, inputs, context_lengths=lengths)
        stepped = step_by_step(model, context, lengths, inputs)
        _, after = model.decode(inputs, model.start(context, lengths))
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    # row 0: a blank line after its line 2 starts a new document (line 0) at column 1; row 1's
    # column stays at the last vector (5) however long the line runs
    assert after.layout.tolist() == [[0, 1, 0], [0, 5, 0]]
    # a context that reaches no document start or line break: the last line and column vectors
    unknown = model.start(torch.full((1, 4), 9))
    assert unknown.layout.tolist() == [[3, 5, 0]]


def test_layout_positions_change_the_prediction_only_through_the_layout():
    """The same last characters on another line or column give other logits (the layout is read),
    and zero layout vectors give exactly the model without layout positions."""
    model = layout_model()
    inputs = torch.tensor([[9, 9, 9]])
    with torch.no_grad():
        on_line_1, _ = model(torch.tensor([[1, 9, NEWLINE, 9]]), inputs)
        on_line_2, _ = model(torch.tensor([[1, NEWLINE, NEWLINE, 9]]), inputs)
        assert not torch.allclose(on_line_1, on_line_2)
        plain = tiny("gru", 1)
        model.line_embedding.weight.zero_()
        model.column_embedding.weight.zero_()
        context = torch.tensor([[1, 9, NEWLINE, 9]])
        torch.testing.assert_close(model(context, inputs)[0], plain(context, inputs)[0])


def test_layout_positions_are_checked_and_old_configs_have_none():
    with pytest.raises(ValueError, match="newline_id"):
        ModelConfig(vocab_size=VOCAB, line_positions=8)
    with pytest.raises(ValueError, match="line_positions"):
        ModelConfig(vocab_size=VOCAB, line_positions=1, newline_id=NEWLINE)
    with pytest.raises(ValueError, match="newline_id"):
        ModelConfig(vocab_size=VOCAB, newline_id=NEWLINE)  # no layout: no newline id
    config = layout_model().config
    assert ModelConfig.from_dict(config.to_dict()) == config and config.has_layout
    old = {k: v for k, v in ModelConfig(vocab_size=VOCAB).to_dict().items()
           if k not in ("line_positions", "column_positions", "newline_id")}
    assert not ModelConfig.from_dict(old).has_layout


def test_a_layout_model_keeps_its_module_step():
    from textgen.models.fused_step import FusedStepError, can_fuse, fuse_step

    model = layout_model()
    assert not can_fuse(model)
    with pytest.raises(FusedStepError, match="layout positions"):
        fuse_step(model)


@pytest.mark.parametrize("extra", [{}, {"adaptive_cutoffs": [10, 20]}, {"adaptive_cutoffs": [6, 20]}])
def test_the_layout_loss_is_the_cross_entropy_of_which_layout_token_comes_next(extra):
    """Against the model's whole distribution: p(a layout token) where one comes, else 1 - p(any)."""
    model = tiny("gru", 1, **extra)
    layout = torch.tensor([5, 7, 8])  # in the adaptive head's shortlist, or (cutoff 6) partly beyond it
    context = torch.randint(4, VOCAB, (2, 6))
    inputs = torch.randint(4, VOCAB, (2, 9))
    targets = torch.randint(4, VOCAB, (2, 9))
    targets[0, :4] = torch.tensor([5, 7, 8, 5])
    targets[1, 7:] = 3  # padding is not scored
    with torch.no_grad():
        loss, layout_loss = model.layout_losses(context, inputs, targets, layout)
        logits, _ = model(context, inputs)
        logprobs = torch.log_softmax(logits, dim=-1)[targets != 3]
        wanted = targets[targets != 3]
        probs = logprobs.exp()
        expected = [-lp[y].item() if y in layout else -torch.log(1 - p[layout].sum()).item()
                    for lp, p, y in zip(logprobs, probs, wanted.tolist())]
    assert layout_loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-4)
    assert loss.item() == pytest.approx(-logprobs.gather(1, wanted[:, None]).mean().item(), rel=1e-4)
