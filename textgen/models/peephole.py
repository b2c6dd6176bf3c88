"""A stacked LSTM with peephole connections (Gers and Schmidhuber, 2000): its input and forget
gates see the previous cell state, its output gate the new one.

    i = sigmoid(W_i x + U_i h + w_ci * c)        f = sigmoid(W_f x + U_f h + w_cf * c)
    c' = f * c + i * tanh(W_g x + U_g h)          o = sigmoid(W_o x + U_o h + w_co * c')
    h' = o * tanh(c')

torch has no fused kernel for it, so it steps through the sequence in Python, one character at a
time (the input projections of all steps are one matrix product up front).  It is called like a
batch-first ``nn.LSTM`` and names its parameters as one does (``weight_ih_l0``, ``bias_hh_l1``, ...),
plus the diagonal peephole weights ``weight_ci_l0``, ``weight_cf_l0``, ``weight_co_l0``, which start
at zero: an untrained ``PeepholeLSTM`` computes exactly what an ``nn.LSTM`` with its weights does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")  # per layer: weight_ci_l0, ...
LSTM_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # nn.LSTM's names


class PeepholeLSTM(nn.Module):
    """Multi-layer peephole LSTM, batch first; input (B, T, I) or a ``PackedSequence``, state
    ``(h, c)`` each (layers, B, H).  Returns the top layer's outputs and the final ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("PeepholeLSTM is batch first only")
        self.input_size, self.hidden_size, self.num_layers, self.dropout = input_size, hidden_size, num_layers, dropout
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            shapes = {"weight_ih": (4 * hidden_size, width), "weight_hh": (4 * hidden_size, hidden_size),
                      "bias_ih": (4 * hidden_size,), "bias_hh": (4 * hidden_size,),  # LSTM_WEIGHTS
                      **{name: (hidden_size,) for name in PEEPHOLES}}
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s initialisation, uniform in +-1/sqrt(H); the peepholes start closed (zero)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            for name in LSTM_WEIGHTS:
                nn.init.uniform_(getattr(self, f"{name}_l{layer}"), -bound, bound)
            for name in PEEPHOLES:
                nn.init.zeros_(getattr(self, f"{name}_l{layer}"))

    def _layer(self, layer: int) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f"{name}_l{layer}") for name in (*LSTM_WEIGHTS, *PEEPHOLES))

    def forward(self, x: Tensor | PackedSequence,
                state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        packed = isinstance(x, PackedSequence)
        lengths = None
        if packed:
            x, lengths = pad_packed_sequence(x, batch_first=True)
        B, T, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size)
            state = (zeros, zeros)
        # A row stops changing after its last character, so its final state is the one at its length.
        running = None if lengths is None else (
            torch.arange(T)[None, :] < lengths[:, None]).to(x.device)[:, :, None]  # (B, T, 1)
        finals_h, finals_c = [], []
        layer_input = x
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh, w_ci, w_cf, w_co = self._layer(layer)
            # Every step's input projection in one product, split into T contiguous (B, 4H) steps:
            # unbind's backward is one stack, where indexing [:, t] would allocate a (B, T, 4H)
            # gradient for every step (5x slower).
            projected = F.linear(layer_input.transpose(0, 1), w_ih, b_ih + b_hh).unbind(0)
            h, c = state[0][layer], state[1][layer]
            outputs = []
            for t in range(T):
                i, f, g, o = torch.addmm(projected[t], h, w_hh.t()).chunk(4, dim=1)
                i, f = torch.sigmoid(i + w_ci * c), torch.sigmoid(f + w_cf * c)
                c_next = f * c + i * torch.tanh(g)
                h_next = torch.sigmoid(o + w_co * c_next) * torch.tanh(c_next)
                if running is not None:
                    h_next, c_next = torch.where(running[:, t], h_next, h), torch.where(running[:, t], c_next, c)
                h, c = h_next, c_next
                outputs.append(h)
            finals_h.append(h)
            finals_c.append(c)
            layer_input = torch.stack(outputs, dim=1)  # (B, T, H)
            if layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        output: Tensor | PackedSequence = layer_input
        if lengths is not None:
            output = pack_padded_sequence(layer_input, lengths, batch_first=True, enforce_sorted=False)
        return output, (torch.stack(finals_h), torch.stack(finals_c))
