"""Int8 weights for CPU decoding, chosen when an export is loaded (``load_export(..., quantize="int8")``).

``int8`` replaces what a decoding step reads, the decoder's recurrent layers and every linear layer
after them (attention output, output layer or adaptive-softmax clusters), by modules that hold
their weights as int8 with one scale per output row, and quantize their inputs to int8 with one
scale per *row* of the batch.  The product is an exact int8 x int8 -> int32 matrix product
(``torch._int_mm``), rescaled in float: a row's result never depends on the other rows of its batch,
so a seeded request writes the same text alone or batched, as in float.  (``torch.ao``'s
``quantize_dynamic`` picks one activation scale for the whole batch, which breaks that, and is
deprecated.)  The encoder, which runs only when rows join or re-read their context, stays float;
so do the embeddings, of which a step reads one row.

``auto`` is ``none`` off the CPU; on CPU it is measured when the export is loaded: int8 wins where the
CPU has fast int8 dot products and can lose where it has not (an AVX2-only host: docs/SERVING.md), so it
is timed, not assumed (:mod:`textgen.runtime_choice`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from textgen.cpu_choice import resolve_cpu_choice

INT8_MAX = 127
_MIN_SCALE = 1e-12  # the scale of an all-zero row (any positive value gives zeros back)


class QuantizeError(ValueError):
    """An unknown ``quantize`` value, or one the device cannot run; the message names the option."""


QUANTIZE_MODES = ("none", "int8")


def resolve_quantize(mode: str, device: str | torch.device) -> str:
    """``none``, ``int8`` or (on CPU) ``auto``: what ``mode`` means on ``device``; raises :class:`QuantizeError`."""
    return resolve_cpu_choice("quantize", mode, candidates=QUANTIZE_MODES, cpu_only=("int8",), elsewhere="none",
                              error=QuantizeError, device=device)


def _quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 of a 2-D tensor, one scale per row: (int8 values, float scales (rows, 1))."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=_MIN_SCALE) / INT8_MAX
    return torch.round(x / scale).to(torch.int8), scale


def _int_mm(a: Tensor, b: Tensor) -> Tensor:
    """``torch._int_mm`` through oneDNN: with oneDNN off (the sampler turns it off around float
    recurrent steps) CPU falls back to a reference loop about 200x slower."""
    if torch.backends.mkldnn.enabled:
        return torch._int_mm(a, b)
    torch.backends.mkldnn.enabled = True
    try:
        return torch._int_mm(a, b)
    finally:
        torch.backends.mkldnn.enabled = False


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (a scale per output) and inputs quantized per row."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        q, scale = _quantize_rows(weight.detach().float())  # (out, in), (out, 1)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight_t", q.t())  # (in, out): the layout torch._int_mm reads as its right operand
        self.register_buffer("weight_scale", scale.reshape(1, -1))  # (1, out)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        q, scale = _quantize_rows(x.reshape(-1, self.in_features).float())
        out = _int_mm(q, self.weight_t).float() * (scale * self.weight_scale)  # (rows, out)
        if self.bias is not None:
            out += self.bias
        return out.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8RNN(nn.Module):
    """A unidirectional, batch-first ``nn.GRU``/``nn.LSTM``/``nn.RNN`` (tanh) stack with int8 weights.

    Called as the module it replaces: input (B, T, I) or a ``PackedSequence``, state (L, B, H) (a
    pair for LSTM); returns the top layer's outputs and the final state.  The input products of all
    T steps are one matrix product per layer; the recurrent ones run step by step.
    """

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        if rnn.bidirectional or not rnn.batch_first or rnn.proj_size:
            raise QuantizeError("int8 recurrent layers are unidirectional and batch first, without projections")
        self.mode = {"GRU": "gru", "LSTM": "lstm", "RNN_TANH": "rnn"}.get(rnn.mode)
        if self.mode is None:
            raise QuantizeError(f"int8 has no recurrent cell {rnn.mode}")
        self.hidden_size, self.num_layers = rnn.hidden_size, rnn.num_layers
        self.input_proj = nn.ModuleList()
        self.hidden_proj = nn.ModuleList()
        for layer in range(rnn.num_layers):
            self.input_proj.append(Int8Linear(getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}")))
            self.hidden_proj.append(Int8Linear(getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")))

    def _cell(self, layer: int, projected: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step of one layer: ``projected`` is the input's product (B, gates*H)."""
        hidden = self.hidden_proj[layer](h)  # (B, gates*H)
        if self.mode == "gru":  # gates r, z, n as nn.GRU orders them
            i_r, i_z, i_n = projected.chunk(3, dim=1)
            h_r, h_z, h_n = hidden.chunk(3, dim=1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(torch.addcmul(i_n, r, h_n))
            return torch.lerp(n, h, z), None
        if self.mode == "lstm":  # gates i, f, g, o
            i, f, g, o = (projected + hidden).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        return torch.tanh(projected + hidden), None

    def forward(self, x: Tensor | PackedSequence, state: Tensor | tuple[Tensor, Tensor] | None = None):
        lengths = None
        if isinstance(x, PackedSequence):
            x, lengths = pad_packed_sequence(x, batch_first=True)
        B, T, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            state = (zeros, zeros) if self.mode == "lstm" else zeros
        hs, cs = state if self.mode == "lstm" else (state, None)
        # A row stops changing after its last character, so its final state is the one at its length.
        running = None if lengths is None else (torch.arange(T)[None, :] < lengths[:, None]).to(x.device)[:, :, None]
        finals_h, finals_c, layer_input = [], [], x
        for layer in range(self.num_layers):
            projected = self.input_proj[layer](layer_input).unbind(1)  # T x (B, gates*H)
            h, c = hs[layer], None if cs is None else cs[layer]
            outputs = []
            for t in range(T):
                h_next, c_next = self._cell(layer, projected[t], h, c)
                if running is not None:
                    h_next = torch.where(running[:, t], h_next, h)
                    c_next = None if c is None else torch.where(running[:, t], c_next, c)
                h, c = h_next, c_next
                outputs.append(h)
            finals_h.append(h)
            finals_c.append(c)
            layer_input = outputs[0][:, None] if T == 1 else torch.stack(outputs, dim=1)  # (B, T, H)
        output: Tensor | PackedSequence = layer_input
        if lengths is not None:
            output = pack_padded_sequence(layer_input, lengths, batch_first=True, enforce_sorted=False)
        final_h = torch.stack(finals_h)
        return output, ((final_h, torch.stack(finals_c)) if self.mode == "lstm" else final_h)


_RNN = (nn.GRU, nn.LSTM, nn.RNN)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Swap, in place, the decoder side of a :class:`~textgen.models.Seq2SeqLM` to int8 weights.

    Every ``nn.Linear`` and unidirectional recurrent layer except the encoder and its projections
    (``encoder``, ``bridge``, ``bridge_cell``, ``attention_key``: they run only when rows start);
    the peephole LSTM decoder, stepped in Python with its own weights, stays float.
    """
    skip = {"encoder", "bridge", "bridge_cell", "attention_key"}

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if module is model and name in skip:
                continue
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear.from_float(child))
            elif isinstance(child, _RNN) and not child.bidirectional:
                setattr(module, name, Int8RNN(child))
            else:
                swap(child)

    with torch.no_grad():
        swap(model)
    return model


def quantize_model(model: nn.Module, mode: str, device: str | torch.device = "cpu") -> nn.Module:
    """``model`` as ``mode`` (``none`` or ``int8``) says, on ``device``; in place."""
    if resolve_quantize(mode, device) == "int8":
        return quantize_int8(model)
    return model


def weight_bytes(module: nn.Module) -> int:
    """Bytes of the parameters and buffers of ``module`` (what reading all its weights costs)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


__all__ = ["Int8Linear", "Int8RNN", "QUANTIZE_MODES", "QuantizeError", "quantize_int8", "quantize_model",
           "resolve_quantize", "weight_bytes"]
