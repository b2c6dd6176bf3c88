"""The textgen model: a bidirectional recurrent encoder reads the context, a recurrent decoder with
attention writes the continuation one character at a time.

    context (B, Tc) --embed--> bi-LSTM/GRU x E layers --> memory (B, Tc, 2*He)
                                   |final states
                                   v bridge (linear + tanh)
    inputs (B, T) --embed--> LSTM/GRU x L layers (initial state from the bridge) --> h (B, T, H)
                                                      attention(h, memory) --> c (B, T, 2*He)
                                              h + tanh(W [h; c]) --> head --> logits (B, T, V)

The head is a linear layer (optionally tied to the embedding) or, for large vocabularies, an
adaptive softmax.

With ``line_positions``/``column_positions`` the decoder's input also adds a learned vector for
where the character stands in the text's layout: the line of the document it is on and its column
(tokens since the line began), counted by the model itself from the context and from every token it
reads (:class:`DecoderState.layout`), so sampling, training and evaluation count alike.  Verse whose
lines and sentences have fixed lengths (a ci to its tune) is then a lookup of tune, line and column
rather than a count the recurrent state must keep.

``encoder.layers = 0`` gives a decoder-only char-rnn: there is no memory, and :meth:`start` instead
"burns in" the context through the decoder itself, so both kinds see the same characters.

Training and sampling share one code path: :meth:`start` turns a context into a
:class:`DecoderState`, :meth:`decode` runs the decoder over any number of steps from a state (the
teacher-forced forward), and :meth:`step` is :meth:`decode` for one step: O(1) work per generated
character (attention reads the fixed-size context, never the generated text).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from textgen.models.peephole import PeepholeLSTM
from textgen.tokenizer import BOS_ID, PAD_ID  # padded targets are ignored by the loss; BOS starts a text

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class EncoderConfig:
    """The bidirectional context encoder."""

    layers: int = 1
    """Stacked bidirectional layers; 0 makes the model a decoder-only char-rnn."""
    hidden: int = 256
    """Hidden units per direction."""


#: Fields added after exports were first written, each with the value that describes the model of an
#: export whose config lacks it (not a second default: new configs always carry the field).
ABSENT_FROM_OLD_EXPORTS: dict[str, Any] = {"attention_residual": False, "line_positions": 0, "column_positions": 0,
                                           "newline_id": None}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model: an export stores it as JSON beside the weights."""

    vocab_size: int
    """Size of the tokenizer's vocabulary (set from the tokenizer, not by hand)."""
    cell: str = "lstm"
    """Recurrent cell of encoder and decoder: ``lstm``, ``gru`` or ``rnn`` (tanh)."""
    embedding: int = 128
    """Character embedding size, shared by encoder and decoder."""
    hidden: int = 512
    """Decoder hidden units per layer."""
    layers: int = 2
    """Stacked decoder layers."""
    dropout: float = 0.1
    """Dropout on embeddings, between layers and before the output head."""
    tie_weights: bool = False
    """Share the output matrix with the embedding (through a projection to ``embedding``)."""
    forget_bias: float = 1.0
    """Initial LSTM forget-gate bias."""
    orthogonal_init: bool = True
    """Orthogonal initialisation of the recurrent weight matrices."""
    attention_residual: bool = True
    """Add the attention output to the decoder output (``h + tanh(W [h; c])``) instead of replacing
    it: the decoder keeps a direct path to the head, which trains several times faster early on."""
    layer_norm: bool = False
    """Run the decoder's layers one at a time with a residual connection and LayerNorm between them
    (:class:`ResidualNormStack`) instead of one fused multi-layer RNN."""
    peephole: bool = False
    """LSTM only: a decoder with peephole connections (:class:`PeepholeLSTM`, stepped in Python);
    the encoder stays a fused bidirectional LSTM."""
    adaptive_cutoffs: list[int] = field(default_factory=list)
    """Token-id cutoffs of an adaptive softmax head (``nn.AdaptiveLogSoftmaxWithLoss``); empty = full
    softmax. Ids are frequency-ordered after the special and byte pieces, so e.g. ``[1000, 3000]``
    puts the ~740 commonest Tang characters in the head cluster. For large vocabularies only."""
    adaptive_div: float = 4.0
    """Each adaptive tail cluster's projection is ``adaptive_div`` times narrower than the last."""
    line_positions: int = 0
    """Layout: the decoder's input adds a learned vector for the line of the document it is on
    (lines since the document began: BOS or a blank line), the last of ``line_positions`` vectors
    also for every later line and for a context that does not reach the document's start.  0: off."""
    column_positions: int = 0
    """Layout: a learned vector for the column (tokens since the line began), the last for that many
    or more.  0: off."""
    newline_id: int | None = None
    """The tokenizer's id of a line break, which the layout counts (set from the tokenizer, like
    ``vocab_size``; only with layout positions)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        checks = {
            "cell": self.cell in CELLS,
            "vocab_size": self.vocab_size > PAD_ID,
            "embedding": self.embedding > 0,
            "hidden": self.hidden > 0,
            "layers": self.layers >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "encoder.layers": self.encoder.layers >= 0,
            "encoder.hidden": self.encoder.hidden > 0,
            "adaptive_cutoffs": list(self.adaptive_cutoffs) == sorted(set(self.adaptive_cutoffs))
            and all(PAD_ID < c < self.vocab_size for c in self.adaptive_cutoffs),
            "adaptive_div": self.adaptive_div >= 1.0,
            "peephole": not self.peephole or self.cell == "lstm",
            "line_positions": self.line_positions == 0 or self.line_positions >= 2,
            "column_positions": self.column_positions == 0 or self.column_positions >= 2,
            "newline_id": (not self.has_layout and self.newline_id is None)
            or (self.has_layout and self.newline_id is not None and 0 <= self.newline_id < self.vocab_size),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid model config field(s) {bad}: {self}; cell must be one of {sorted(CELLS)}, "
                "adaptive_cutoffs increasing ids between the special tokens and vocab_size, "
                "peephole only with cell=lstm, line/column_positions 0 (off) or at least 2, and newline_id "
                "a token id exactly when they are on"
            )
        if self.adaptive_cutoffs and self.tie_weights:
            raise ValueError("model.tie_weights and model.adaptive_cutoffs cannot be combined")
        self.adaptive_cutoffs = [int(c) for c in self.adaptive_cutoffs]

    @property
    def has_encoder(self) -> bool:
        return self.encoder.layers > 0

    @property
    def has_layout(self) -> bool:
        """Whether the decoder is told its line and/or column (:attr:`line_positions`)."""
        return self.line_positions > 0 or self.column_positions > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**{**ABSENT_FROM_OLD_EXPORTS, **values})


@dataclass
class DecoderState:
    """Per-row decoding state; every tensor has the batch on the dimension listed in ``_BATCH_DIM``."""

    hidden: Tensor  # (L, B, H)
    cell: Tensor | None = None  # (L, B, H), LSTM only
    memory: Tensor | None = None  # (B, Tc, 2*He) encoder outputs
    keys: Tensor | None = None  # (B, Tc, H) memory projected for attention
    memory_mask: Tensor | None = None  # (B, Tc) True where the context has a character
    layout: Tensor | None = None  # (B, 3) line, column, last token a line break: models with layout positions

    _BATCH_DIM = {"hidden": 1, "cell": 1, "memory": 0, "keys": 0, "memory_mask": 0, "layout": 0}

    def _map(self, fn) -> DecoderState:
        return replace(self, **{
            name: None if getattr(self, name) is None else fn(getattr(self, name), dim)
            for name, dim in self._BATCH_DIM.items()
        })

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[1]

    def select(self, rows: Tensor) -> DecoderState:
        """The state of the given rows (a LongTensor of row indices), in that order."""
        return self._map(lambda t, dim: t.index_select(dim, rows))

    def assign(self, rows: Tensor, other: DecoderState) -> DecoderState:
        """A copy whose ``rows`` hold ``other``'s rows (``other.batch_size == len(rows)``)."""
        def put(t: Tensor, dim: int, name: str) -> Tensor:
            out = t.clone()
            out.index_copy_(dim, rows, getattr(other, name))
            return out
        return replace(self, **{
            name: None if getattr(self, name) is None else put(getattr(self, name), dim, name)
            for name, dim in self._BATCH_DIM.items()
        })

    @staticmethod
    def cat(states: list[DecoderState]) -> DecoderState:
        """Stack several states into one batch (rows in order)."""
        first = states[0]
        return replace(first, **{
            name: None if getattr(first, name) is None
            else torch.cat([getattr(s, name) for s in states], dim=dim)
            for name, dim in DecoderState._BATCH_DIM.items()
        })


class ResidualNormStack(nn.Module):
    """Stacked recurrent layers with LayerNorm between them and residual connections.

    Layer 0 gives ``LayerNorm(rnn_0(x))``; every layer above it ``LayerNorm(x + rnn_i(dropout(x)))``.
    Called like a multi-layer ``nn.LSTM``/``nn.GRU`` (batch first, packed input too) and returns the
    same state shapes, so the model uses it in place of one.
    """

    def __init__(self, rnn: type[nn.Module], input_size: int, hidden_size: int, num_layers: int,
                 dropout: float, **extra: Any) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            rnn(input_size if i == 0 else hidden_size, hidden_size, batch_first=True, **extra)
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor | PackedSequence, state: Tensor | tuple[Tensor, Tensor] | None = None):
        packed = isinstance(x, PackedSequence)
        data = x.data if packed else x
        finals = []
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            layer_state = None if state is None else (
                tuple(s[i:i + 1] for s in state) if isinstance(state, tuple) else state[i:i + 1])
            layer_input = data if i == 0 else self.dropout(data)
            out, final = layer(x._replace(data=layer_input) if packed else layer_input, layer_state)
            out = out.data if packed else out
            data = norm(out if i == 0 else data + out)
            finals.append(final)
        output = x._replace(data=data) if packed else data
        if isinstance(finals[0], tuple):
            return output, tuple(torch.cat(parts) for parts in zip(*finals))
        return output, torch.cat(finals)


class Seq2SeqLM(nn.Module):
    """Bidirectional encoder + attention decoder character language model."""

    #: The layout positions' vector tables (``line_positions``, ``column_positions``), in that order.
    LAYOUT_TABLES = ("line_embedding", "column_embedding")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn = CELLS[config.cell]
        extra = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        H, E, L = config.hidden, config.embedding, config.layers
        self.embedding = nn.Embedding(config.vocab_size, E, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(config.dropout)
        if config.has_encoder:
            He, Le = config.encoder.hidden, config.encoder.layers
            self.encoder = rnn(E, He, num_layers=Le, batch_first=True, bidirectional=True,
                               dropout=config.dropout if Le > 1 else 0.0, **extra)
            self.bridge = nn.Linear(2 * He, L * H)
            self.bridge_cell = nn.Linear(2 * He, L * H) if config.cell == "lstm" else None
            self.attention_key = nn.Linear(2 * He, H, bias=False)
            self.attention_out = nn.Linear(H + 2 * He, H)
        decoder_rnn = PeepholeLSTM if config.peephole else rnn
        if config.layer_norm:
            self.decoder = ResidualNormStack(decoder_rnn, E, H, L, config.dropout, **extra)
        else:
            self.decoder = decoder_rnn(E, H, num_layers=L, batch_first=True,
                                       dropout=config.dropout if L > 1 else 0.0, **extra)
        if config.adaptive_cutoffs:
            self.adaptive_head = nn.AdaptiveLogSoftmaxWithLoss(
                H, config.vocab_size, cutoffs=config.adaptive_cutoffs, div_value=config.adaptive_div)
        elif config.tie_weights:
            self.head_projection = nn.Linear(H, E)
            self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        else:
            self.head = nn.Linear(H, config.vocab_size)
        # Zero at first (and drawing no random numbers): a model given layout positions starts as the
        # same model without them, so fine-tuning one into the other starts where its source is.
        for table, n in zip(self.LAYOUT_TABLES, (config.line_positions, config.column_positions)):
            setattr(self, table, nn.Embedding.from_pretrained(torch.zeros(n, E), freeze=False) if n else None)
        self.fused_step: nn.Module | None = None  # set by textgen.models.fused_step.fuse_step for decoding
        self._init_recurrent()

    def _init_recurrent(self) -> None:
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[self.config.cell]
        stacks = (m for m in (getattr(self, "encoder", None), self.decoder) if m is not None)
        modules = [layer for m in stacks for layer in (m.layers if isinstance(m, ResidualNormStack) else [m])]
        for module in modules:
            for name, param in module.named_parameters():
                if name.startswith("weight_hh") and self.config.orthogonal_init:
                    for block in param.data.chunk(gates, dim=0):
                        nn.init.orthogonal_(block)
                elif name.startswith("bias") and self.config.cell == "lstm":
                    param.data.zero_()
                    if name.startswith("bias_ih"):
                        size = module.hidden_size
                        param.data[size:2 * size] = self.config.forget_bias  # gate order i, f, g, o

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ encoder side
    def start(self, context: Tensor, lengths: Tensor | None = None) -> DecoderState:
        """Read a right-padded context (B, Tc) with ``lengths`` (B,) >= 1 into a decoder state.

        The decoder's first input must be the context's last character.
        """
        B, Tc = context.shape
        if lengths is None:
            lengths = torch.full((B,), Tc, dtype=torch.long, device=context.device)
        state = self._encode(context, lengths) if self.config.has_encoder else self._burn_in(context, lengths)
        if self.config.has_layout:
            state = replace(state, layout=self._context_layout(context, lengths))
        return state

    # ------------------------------------------------------------------ layout (line, column)
    def _layout_caps(self) -> tuple[int, int]:
        return max(self.config.line_positions - 1, 0), max(self.config.column_positions - 1, 0)

    def _advance_layout(self, layout: Tensor, tokens: Tensor) -> Tensor:
        """The layout (B, 3) after reading ``tokens`` (B,): BOS or a blank line starts a document's
        first line, a line break the next line; columns count tokens since the line began."""
        line, column, after_break = layout.unbind(1)
        line_cap, column_cap = self._layout_caps()
        is_break, is_bos = tokens == self.config.newline_id, tokens == BOS_ID
        line = torch.where(is_bos | (is_break & after_break.bool()), 0, line + is_break.long())
        column = torch.where(is_break | is_bos, 0, column + 1)
        return torch.stack([line.clamp(max=line_cap), column.clamp(max=column_cap), is_break.long()], dim=1)

    def _context_layout(self, context: Tensor, lengths: Tensor) -> Tensor:
        """The layout after all but the last context token (the decoder's first input); a context that
        does not reach back to a document's start or a line break leaves line/column at their caps."""
        line_cap, column_cap = self._layout_caps()
        layout = torch.tensor([line_cap, column_cap, 0], device=context.device).repeat(context.shape[0], 1)
        for t in range(context.shape[1] - 1):
            live = (t < lengths - 1)[:, None]
            layout = torch.where(live, self._advance_layout(layout, context[:, t]), layout)
        return layout

    def _layout_vectors(self, inputs: Tensor, layout: Tensor) -> tuple[Tensor, Tensor]:
        """What the layout adds to each input's embedding (B, T, E), and the layout after ``inputs``."""
        lines, columns = [], []
        for t in range(inputs.shape[1]):
            layout = self._advance_layout(layout, inputs[:, t])
            lines.append(layout[:, 0])
            columns.append(layout[:, 1])
        added = 0
        if self.line_embedding is not None:
            added = added + self.line_embedding(torch.stack(lines, dim=1))
        if self.column_embedding is not None:
            added = added + self.column_embedding(torch.stack(columns, dim=1))
        return added, layout

    def _run_rnn(self, rnn: nn.RNNBase, x: Tensor, lengths: Tensor, state=None):
        """Run ``rnn`` over right-padded ``x`` (B, T, E); packs only when rows differ in length and
        ``rnn`` cannot read the lengths itself (a module with ``takes_lengths``, such as the encoder of
        :mod:`textgen.encoder_runtime`)."""
        T = x.shape[1]
        if getattr(rnn, "takes_lengths", False):
            return rnn(x, state, lengths=lengths)
        if bool((lengths == T).all()):
            return rnn(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return out, final

    def _encode(self, context: Tensor, lengths: Tensor) -> DecoderState:
        cfg = self.config
        B = context.shape[0]
        x = self.dropout(self.embedding(context))  # (B, Tc, E)
        memory, final = self._run_rnn(self.encoder, x, lengths)  # (B, Tc, 2He)
        h_n, c_n = final if isinstance(final, tuple) else (final, None)
        top = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2He): forward and backward of the top layer
        hidden = torch.tanh(self.bridge(top)).view(B, cfg.layers, cfg.hidden).transpose(0, 1).contiguous()
        cell = None
        if c_n is not None:
            top_c = torch.cat([c_n[-2], c_n[-1]], dim=-1)
            cell = self.bridge_cell(top_c).view(B, cfg.layers, cfg.hidden).transpose(0, 1).contiguous()
        mask = torch.arange(context.shape[1], device=context.device)[None, :] < lengths[:, None]  # (B, Tc)
        return DecoderState(hidden=hidden, cell=cell, memory=memory,
                            keys=self.attention_key(memory), memory_mask=mask)

    def _burn_in(self, context: Tensor, lengths: Tensor) -> DecoderState:
        """Decoder-only: run the decoder over all but the last context character."""
        cfg = self.config
        B = context.shape[0]
        zeros = context.new_zeros((cfg.layers, B, cfg.hidden), dtype=self.embedding.weight.dtype)
        state = DecoderState(hidden=zeros, cell=zeros.clone() if cfg.cell == "lstm" else None)
        burn = lengths - 1
        if context.shape[1] < 2 or int(burn.max()) == 0:
            return state
        x = self.dropout(self.embedding(context[:, :-1]))  # (B, Tc-1, E)
        _, final = self._run_rnn(self.decoder, x, burn.clamp(min=1), self._rnn_state(state))
        h, c = final if isinstance(final, tuple) else (final, None)
        empty = (burn == 0)[None, :, None]  # rows with nothing to burn in keep the zero state
        h = h.masked_fill(empty, 0.0)
        c = c.masked_fill(empty, 0.0) if c is not None else None
        return DecoderState(hidden=h, cell=c)

    # ------------------------------------------------------------------ decoder side
    @staticmethod
    def _rnn_state(state: DecoderState):
        return (state.hidden, state.cell) if state.cell is not None else state.hidden

    def decode(self, inputs: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Teacher-forced decoding of ``inputs`` (B, T) from ``state``: logits (B, T, V), new state.

        With an adaptive softmax head the "logits" are log-probabilities (equal up to a constant).
        """
        features, state = self._features(inputs, state)
        return self._head(features), state

    def _features(self, inputs: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """The head's input (B, T, H), after attention and dropout, and the new state."""
        x = self.embedding(inputs)  # (B, T, E)
        layout = state.layout
        if layout is not None:
            added, layout = self._layout_vectors(inputs, layout)
            x = x + added
        out, final = self.decoder(self.dropout(x), self._rnn_state(state))  # (B, T, H)
        h, c = final if isinstance(final, tuple) else (final, None)
        if state.memory is not None:
            out = self._attend(out, state)  # (B, T, H)
        return self.dropout(out), replace(state, hidden=h, cell=c, layout=layout)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One character for every row: ``tokens`` (B,) -> logits (B, V) and the next state.

        A model loaded with ``decode_step="fused"`` runs its :class:`~textgen.models.fused_step.FusedStep`
        instead: the same function in fewer operations."""
        if self.fused_step is not None and tokens.shape[0] <= self.fused_step.max_rows:
            return self.fused_step(tokens, state)
        logits, state = self.decode(tokens[:, None], state)
        return logits[:, 0], state

    def _attend(self, out: Tensor, state: DecoderState) -> Tensor:
        scores = out @ state.keys.transpose(1, 2) / math.sqrt(out.shape[-1])  # (B, T, Tc)
        scores = scores.masked_fill(~state.memory_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, Tc)
        context = weights @ state.memory  # (B, T, 2He)
        attended = torch.tanh(self.attention_out(torch.cat([out, context], dim=-1)))  # (B, T, H)
        return out + attended if self.config.attention_residual else attended

    def _head(self, x: Tensor) -> Tensor:
        if self.config.adaptive_cutoffs:
            return self.adaptive_head.log_prob(x.flatten(0, -2)).view(*x.shape[:-1], -1)
        if self.config.tie_weights:
            return self.head_projection(x) @ self.embedding.weight.t() + self.head_bias
        return self.head(x)

    # ------------------------------------------------------------------ training entry
    def forward(
        self,
        context: Tensor,
        inputs: Tensor,
        targets: Tensor | None = None,
        context_lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) for the continuation, and the mean cross-entropy if ``targets`` given.

        An adaptive softmax head computes the loss without full logits: it returns ``None`` for them
        when ``targets`` are given (that is what makes it fast).
        """
        features, _ = self._features(inputs, self.start(context, context_lengths))
        if targets is None:
            return self._head(features), None
        if self.config.adaptive_cutoffs:
            keep = targets.flatten() != PAD_ID
            out = self.adaptive_head(features.flatten(0, 1)[keep], targets.flatten()[keep])
            return None, out.loss
        logits = self._head(features)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
        return logits, loss

    def layout_losses(self, context: Tensor, inputs: Tensor, targets: Tensor, layout_ids: Tensor,
                      context_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward`'s mean cross-entropy, and the mean cross-entropy of the layout alone: which
        of ``layout_ids`` (1-D: line break, punctuation) comes next, or none of them, each position's
        probabilities summed from the head's.  A proper score of the same distribution, so weighting
        it more trains where lines and sentences end harder without pulling the model off the text's
        own frequencies (which up-weighting those targets' token loss would)."""
        features, _ = self._features(inputs, self.start(context, context_lengths))
        keep = targets.flatten() != PAD_ID
        flat, wanted = features.flatten(0, 1)[keep], targets.flatten()[keep]
        cutoffs = self.config.adaptive_cutoffs
        if cutoffs:
            loss = self.adaptive_head(flat, wanted).loss
            if int(layout_ids.max()) < cutoffs[0]:  # all in the head's shortlist: the head alone gives them
                layout_logprobs = torch.log_softmax(self.adaptive_head.head(flat), dim=-1)[:, layout_ids]
            else:
                layout_logprobs = self.adaptive_head.log_prob(flat)[:, layout_ids]
        else:
            logprobs = torch.log_softmax(self._head(flat), dim=-1)
            loss = F.nll_loss(logprobs, wanted)
            layout_logprobs = logprobs[:, layout_ids]
        is_layout = wanted[:, None] == layout_ids[None, :]  # (N, K)
        own = (layout_logprobs * is_layout).sum(dim=1)  # log p of the layout token that comes
        any_layout = torch.logsumexp(layout_logprobs, dim=1).clamp(max=-1e-6)
        none = torch.where(any_layout > -math.log(2), torch.log(-torch.expm1(any_layout)),
                           torch.log1p(-torch.exp(any_layout)))  # log(1 - p(any layout token))
        return loss, -torch.where(is_layout.any(dim=1), own, none).mean()
