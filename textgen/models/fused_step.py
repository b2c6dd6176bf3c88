"""The decoding step of a :class:`~textgen.models.Seq2SeqLM` in few operations, chosen when an export is
loaded (``load_export(..., decode_step="fused")``).

:meth:`Seq2SeqLM.step` is the teacher-forced :meth:`~Seq2SeqLM.decode` run for one token: it goes
through ``nn.GRU``/``nn.LSTM`` (which packs, checks and splits for any sequence length), the
attention of any length and the head's general path, about 40 small operations that a batch-1 step
on CPU spends more time dispatching than computing.  :class:`FusedStep` computes the same float32
function for one token directly from the same weights:

* every matrix is held transposed, ``(in, out)`` and contiguous: for a single row CPU BLAS reads
  that layout about twice as fast as ``nn.Linear``'s ``(out, in)`` (0.28 against 0.54 ms for the
  six products of a ``shakespeare-gru`` step, one thread, docs/SERVING.md);
* a layer is one product for its input, one for its state and four or five element-wise operations
  for its gates (GRU: ``r, z`` in one sigmoid, ``n`` by one ``addcmul`` and ``tanh``, the new state by
  one ``lerp``);
* attention for one query is two batched products and a softmax; the attention output's product
  over ``[h; context]`` is two accumulated products instead of a concatenation and one product.

A batch of more than :data:`FUSED_MAX_ROWS` rows steps through the modules, where that is faster.

Outputs agree with :meth:`Seq2SeqLM.step` to float rounding (a few 1e-6), so a seeded request writes
the same text.  Inference only: the weights are copies, made once at load time (the model's own stay
in place for the encoder, :meth:`Seq2SeqLM.start`).  Models with LayerNorm between layers or
peephole connections keep the module step (:class:`FusedStepError`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from textgen.cpu_choice import resolve_cpu_choice
from textgen.models.seq2seq import DecoderState, Seq2SeqLM

DECODE_STEPS = ("torch", "fused")
FUSED_MAX_ROWS = 1
"""Batches of at most this many rows take the fused step, larger ones the module step: the transposed
layout wins for a single row (0.57 against 0.76 ms a ``shakespeare-gru`` step) and loses a little from
8 rows on, where the products are compute-bound (5.75 against 5.24 ms at 32 rows; docs/SERVING.md)."""
_GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1}


class FusedStepError(ValueError):
    """An unknown ``decode_step``, or a model whose step cannot be fused (LayerNorm layers, peephole
    LSTM, int8 weights)."""


def resolve_decode_step(mode: str, device: str | torch.device) -> str:
    """``torch``, ``fused`` or (on CPU, to be measured) ``auto``: what ``mode`` means on ``device``;
    ``auto`` is ``torch`` elsewhere.  Raises :class:`FusedStepError` naming the option."""
    return resolve_cpu_choice("decode_step", mode, candidates=DECODE_STEPS, elsewhere="torch",
                              error=FusedStepError, device=device)


def _transposed(weight: Tensor) -> Tensor:
    return weight.detach().float().t().contiguous()


def _bias(bias: Tensor | None, size: int, device: torch.device) -> Tensor:
    return torch.zeros(size, device=device) if bias is None else bias.detach().float().clone()


class FusedStep(nn.Module):
    """One decoding step of ``model`` as few operations: ``(tokens (B,), state) -> (logits (B, V), state)``."""

    def __init__(self, model: Seq2SeqLM) -> None:
        super().__init__()
        decoder = model.decoder
        if not isinstance(decoder, nn.RNNBase) or decoder.mode not in _GATES:
            raise FusedStepError(f"the decoding step of a {type(decoder).__name__} decoder cannot be fused "
                                 "(LayerNorm layers and peephole LSTMs keep the module step)")
        if decoder.proj_size or decoder.bidirectional:
            raise FusedStepError("the decoding step of a projected or bidirectional decoder cannot be fused")
        self.mode, self.hidden, self.layers = decoder.mode, decoder.hidden_size, decoder.num_layers
        self.max_rows = FUSED_MAX_ROWS  # larger batches: Seq2SeqLM.step takes the module step
        gates = _GATES[self.mode] * self.hidden
        device = model.embedding.weight.device
        with torch.no_grad():
            self._keep("embedding", model.embedding.weight.detach().float().clone())  # (V, E)
            for layer in range(self.layers):
                self._keep(f"w_ih{layer}", _transposed(getattr(decoder, f"weight_ih_l{layer}")))  # (I, G*H)
                self._keep(f"b_ih{layer}", _bias(getattr(decoder, f"bias_ih_l{layer}", None), gates, device))
                self._keep(f"w_hh{layer}", _transposed(getattr(decoder, f"weight_hh_l{layer}")))  # (H, G*H)
                self._keep(f"b_hh{layer}", _bias(getattr(decoder, f"bias_hh_l{layer}", None), gates, device))
            self.attends = model.config.has_encoder
            if self.attends:
                out = model.attention_out
                self._keep("w_att_h", _transposed(out.weight[:, :self.hidden]))  # (H, H)
                self._keep("w_att_c", _transposed(out.weight[:, self.hidden:]))  # (2He, H)
                self._keep("b_att", _bias(out.bias, self.hidden, device))
                self.residual = model.config.attention_residual
                self.scale = 1.0 / math.sqrt(self.hidden)
            self._init_head(model)

    def _init_head(self, model: Seq2SeqLM) -> None:
        config, device = model.config, model.embedding.weight.device
        if config.adaptive_cutoffs:
            adaptive = model.adaptive_head
            self.head_kind = "adaptive"
            self.shortlist = adaptive.shortlist_size
            self.cutoffs = list(adaptive.cutoffs)
            self._keep("w_head", _transposed(adaptive.head.weight))  # (H, shortlist + clusters)
            self._keep("b_head", _bias(adaptive.head.bias, adaptive.head.out_features, device))
            for i, tail in enumerate(adaptive.tail):
                self._keep(f"w_tail{i}_in", _transposed(tail[0].weight))  # (H, h_i)
                self._keep(f"w_tail{i}_out", _transposed(tail[1].weight))  # (h_i, size_i)
        elif config.tie_weights:
            self.head_kind = "tied"
            self._keep("w_proj", _transposed(model.head_projection.weight))  # (H, E)
            self._keep("b_proj", _bias(model.head_projection.bias, config.embedding, device))
            self._keep("w_head", model.embedding.weight.detach().float().t().contiguous())  # (E, V)
            self._keep("b_head", model.head_bias.detach().float().clone())
        else:
            self.head_kind = "linear"
            self._keep("w_head", _transposed(model.head.weight))  # (H, V)
            self._keep("b_head", _bias(model.head.bias, config.vocab_size, device))

    def _keep(self, name: str, tensor: Tensor) -> None:
        """A weight copy of the step's (not part of any state dict: the export holds the model's own)."""
        self.register_buffer(name, tensor, persistent=False)

    # ------------------------------------------------------------------ one layer
    def _layer(self, layer: int, x: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        gi = torch.addmm(getattr(self, f"b_ih{layer}"), x, getattr(self, f"w_ih{layer}"))  # (B, G*H)
        gh = torch.addmm(getattr(self, f"b_hh{layer}"), h, getattr(self, f"w_hh{layer}"))  # (B, G*H)
        H = self.hidden
        if self.mode == "GRU":  # gates r, z, n as nn.GRU orders them
            rz = (gi[:, :2 * H] + gh[:, :2 * H]).sigmoid_()
            n = torch.addcmul(gi[:, 2 * H:], rz[:, :H], gh[:, 2 * H:]).tanh_()
            return torch.lerp(n, h, rz[:, H:]), None
        if self.mode == "LSTM":  # gates i, f, g, o
            gates = gi.add_(gh)
            act = gates.sigmoid()
            c = torch.addcmul(act[:, H:2 * H] * c, act[:, :H], gates[:, 2 * H:3 * H].tanh())
            return act[:, 3 * H:] * torch.tanh(c), c
        return gi.add_(gh).tanh_(), None

    def _attend(self, out: Tensor, state: DecoderState) -> Tensor:
        scores = torch.bmm(state.keys, out[:, :, None])[:, :, 0].mul_(self.scale)  # (B, Tc)
        weights = torch.softmax(scores.masked_fill_(~state.memory_mask, float("-inf")), dim=-1)  # (B, Tc)
        context = torch.bmm(weights[:, None, :], state.memory)[:, 0]  # (B, 2He)
        attended = torch.addmm(torch.addmm(self.b_att, out, self.w_att_h), context, self.w_att_c).tanh_()  # (B, H)
        return attended.add_(out) if self.residual else attended

    def _head(self, x: Tensor) -> Tensor:
        if self.head_kind == "linear":
            return torch.addmm(self.b_head, x, self.w_head)  # (B, V)
        if self.head_kind == "tied":
            return torch.addmm(self.b_head, torch.addmm(self.b_proj, x, self.w_proj), self.w_head)
        head = torch.log_softmax(torch.addmm(self.b_head, x, self.w_head), dim=-1)  # (B, shortlist + clusters)
        parts = [head[:, :self.shortlist]]
        for i in range(len(self.cutoffs) - 1):
            tail = (x @ getattr(self, f"w_tail{i}_in")) @ getattr(self, f"w_tail{i}_out")  # (B, size_i)
            parts.append(torch.log_softmax(tail, dim=-1).add_(head[:, self.shortlist + i, None]))
        return torch.cat(parts, dim=1)  # (B, V)

    # ------------------------------------------------------------------ the step
    def forward(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        x = self.embedding.index_select(0, tokens)  # (B, E)
        hs, cs = [], []
        for layer in range(self.layers):
            c = None if state.cell is None else state.cell[layer]
            x, c = self._layer(layer, x, state.hidden[layer], c)  # (B, H)
            hs.append(x)
            cs.append(c)
        out = self._attend(x, state) if self.attends else x
        hidden = torch.stack(hs)  # (L, B, H)
        cell = torch.stack(cs) if state.cell is not None else None
        return self._head(out), replace(state, hidden=hidden, cell=cell)


def can_fuse(model: Seq2SeqLM) -> bool:
    """Whether ``model``'s step can be fused: a float32 ``nn.GRU``/``nn.LSTM``/``nn.RNN`` decoder, without
    layout positions (their line and column are counted by the module step)."""
    decoder = model.decoder
    return (isinstance(decoder, nn.RNNBase) and decoder.mode in _GATES and not decoder.proj_size
            and not model.config.has_layout and all(p.dtype == torch.float32 for p in decoder.parameters()))


def use_decode_step(model: Seq2SeqLM, mode: str) -> Seq2SeqLM:
    """``model`` stepping as ``mode`` (``torch`` or ``fused``) says; in place.  ``fused`` on a model that
    cannot be fused (:func:`can_fuse`) raises :class:`FusedStepError`."""
    if mode == "fused":
        return fuse_step(model)
    model.fused_step = None
    return model


def fuse_step(model: Seq2SeqLM) -> Seq2SeqLM:
    """``model`` with its decoding step fused (:class:`FusedStep`, float32, inference only); in place."""
    if not can_fuse(model):
        raise FusedStepError("only a float32 nn.GRU/nn.LSTM/nn.RNN decoder can have its step fused "
                             "(int8 weights and models with layout positions keep their own step)")
    model.fused_step = FusedStep(model)
    return model


__all__ = ["DECODE_STEPS", "FUSED_MAX_ROWS", "FusedStep", "FusedStepError", "can_fuse", "fuse_step", "resolve_decode_step",
           "use_decode_step"]
