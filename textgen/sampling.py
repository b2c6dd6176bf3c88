"""Sampling: pure functions over logits, and :class:`DecodeBatch`, the one decoding engine.

The sampling script, the evaluation and the REST server all generate through :class:`DecodeBatch`:
rows (one per sample) join the batch, every :meth:`DecodeBatch.step` advances all rows by one token
with the model's O(1) ``step``, and finished rows leave.  Each row keeps its own temperature,
top-k/top-p, repetition penalty, stop strings, seed (its own random generator, so a seeded row
writes the same text alone or batched) and optional form constraint.

Text is produced character by character.  Characters outside the vocabulary exist as UTF-8 byte
pieces; a row's :class:`textgen.utf8.Utf8Decoder` masks the choices so that it never emits, or ends
on, an invalid or incomplete UTF-8 sequence.  Every ``target_chars`` tokens a row re-reads its last
``context_chars`` tokens through the encoder, exactly as the model saw text in training.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import Field, dataclass, field, fields

import torch
from torch import Tensor

from textgen import utf8
from textgen.export import LoadedModel
from textgen.models import DecoderState
from textgen.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    CharTokenizer,
    TokenizerError,
    add_token_logprob,
    per_tokenizer,
)
from textgen.utf8 import Utf8Decoder

MAX_STOP_STRINGS = 8
MAX_SAMPLES = 16
MAX_TOP_LOGPROBS = 5
_SEED_MODULUS = 2**63 - 1
_UNIFORM_BLOCK = 64  # a row draws its random numbers this many at a time (the same stream as one by one)


class SamplingError(ValueError):
    """A sampling parameter or prompt that cannot be used; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------- parameters
def option(description: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           **more: object) -> dict[str, object]:
    """The metadata of a :class:`SamplingParams` field: what it means and its bounds, declared once.

    The REST requests (:mod:`server.schemas`, :mod:`server.openai_schemas`), the OpenAPI description,
    the script's options and :meth:`SamplingParams.__post_init__` all read them from here."""
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le)) if value is not None}
    return {"description": description, "bounds": bounds, **more}


@dataclass
class SamplingParams:
    """How to sample one request (the fields, defaults and bounds of every route and of the script)."""

    max_new_chars: int = field(default=200, metadata=option(
        "Characters to generate (fewer if a stop string or a completed form ends the text): characters of text, "
        "not tokens (a character outside the vocabulary is several byte pieces).", ge=0))
    temperature: float = field(default=0.8, metadata=option("Softmax temperature; 0 is greedy decoding.", ge=0))
    top_k: int = field(default=0, metadata=option("Keep the k most likely characters; 0 keeps all.",
                                                  ge=0, le=2**31 - 1))
    top_p: float = field(default=1.0, metadata=option(
        "Keep the smallest set of characters whose probability reaches p (nucleus); 1.0 keeps all.", gt=0, le=1))
    repetition_penalty: float = field(default=1.0, metadata=option(
        "CTRL-style penalty on characters already in the prompt or the text; > 1 discourages repeats.", gt=0))
    min_p: float = field(default=0.0, metadata=option(
        "Drop characters less likely than min_p times the most likely one (after temperature); 0 keeps all.",
        ge=0, le=1))
    seed: int | None = field(default=None, metadata=option(
        "Seed of the request's random generator; the same seed gives the same text, batched or not.", ge=0))
    stop: Sequence[str] = field(default=(), metadata=option(
        f"Up to {MAX_STOP_STRINGS} strings; the text ends before the first one, which is not returned.",
        max_items=MAX_STOP_STRINGS))
    n: int = field(default=1, metadata=option("Independent samples, generated as one batch.", ge=1, le=MAX_SAMPLES))
    best_of: int | None = field(default=None, metadata=option(
        "Draw this many candidates (>= n) as one batch and return the n with the highest model log-probability "
        "per character, best first (their log-probability is reported). Not with a stream.", ge=1, le=MAX_SAMPLES))
    return_logprobs: bool = field(default=False, metadata=option(
        "Report each sample's model log-probability: the sum, and one value per returned character."))
    top_logprobs: int = field(default=0, metadata=option(
        f"Also report, at each character, the most likely whole characters (up to {MAX_TOP_LOGPROBS}) and their "
        "log-probabilities.", ge=0, le=MAX_TOP_LOGPROBS))

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)
        for spec in fields(self):
            value = getattr(self, spec.name)
            problem = _out_of_bounds(spec, value)
            if problem:
                raise SamplingError(spec.name, f"`{spec.name}` {problem}, got {value!r}")
        if not (len(self.stop) <= MAX_STOP_STRINGS and all(isinstance(s, str) and s for s in self.stop)):
            raise SamplingError("stop", f"`stop` must be at most {MAX_STOP_STRINGS} non-empty strings, "
                                        f"got {self.stop!r}")
        if self.best_of is not None and self.best_of < self.n:
            raise SamplingError("best_of", f"`best_of` must be null or an integer from n ({self.n}) to "
                                           f"{MAX_SAMPLES}, got {self.best_of!r}")

    @property
    def candidates(self) -> int:
        """Rows drawn for the request: ``best_of``, or ``n`` without it."""
        return self.n if self.best_of is None else self.best_of

    @property
    def wants_logprobs(self) -> bool:
        """Whether the chosen characters' log-probabilities are tracked (asked for, or to rank)."""
        return self.return_logprobs or self.top_logprobs > 0 or self.candidates > self.n


_BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<="}
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false"}


def option_type(spec: Field) -> tuple[type, bool]:
    """The value type of a :class:`SamplingParams` field (int, float, bool, or tuple for ``stop``) and
    whether it may be None."""
    hint = str(spec.type)
    nullable = "None" in hint
    for name, kind in (("bool", bool), ("float", float), ("int", int)):
        if hint.startswith(name):
            return kind, nullable
    return tuple, nullable


def _out_of_bounds(spec: Field, value: object) -> str:
    """What is wrong with ``value`` for field ``spec`` ("" when nothing is): its type or its bounds."""
    kind, nullable = option_type(spec)
    if value is None and nullable:
        return ""
    if kind is tuple:
        return ""
    bounds = spec.metadata["bounds"]
    words = " and ".join(f"{_BOUND_WORDS[name]} {limit}" for name, limit in bounds.items())
    wanted = ("null or " if nullable else "") + _TYPE_WORDS[kind] + (f" {words}" if words else "")
    if isinstance(value, bool) != (kind is bool):
        return f"must be {wanted}"
    if kind is int and not isinstance(value, int):
        return f"must be {wanted}"
    if kind is float and not (isinstance(value, (int, float)) and math.isfinite(value)):
        return f"must be {wanted}"
    checks = {"ge": lambda limit: value >= limit, "gt": lambda limit: value > limit, "le": lambda limit: value <= limit}
    if not all(checks[name](limit) for name, limit in bounds.items()):
        return f"must be {words}" if not nullable else f"must be null or {words}"
    return ""


# --------------------------------------------------------------------------- pure functions
def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: Tensor) -> Tensor:
    """CTRL penalty: divide positive / multiply negative logits of ``seen`` tokens by ``penalty``.

    ``logits`` (B, V), ``seen`` (B, V) bool, ``penalty`` (B,).
    """
    p = penalty[:, None]
    penalised = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, penalised, logits)


@dataclass(frozen=True)
class DrawSettings:
    """Rows' sampling settings, each (B,), with what they imply worked out once: a batch's rows keep
    theirs from step to step, so :class:`DecodeBatch` builds this once per membership."""

    temperature: Tensor
    top_k: Tensor
    top_p: Tensor
    min_p: Tensor | None
    vocab_size: int
    """V of the logits drawn from: a ``top_k`` of V or more keeps every token."""
    greedy: Tensor = field(init=False)
    """(B,) rows at temperature 0 (argmax)."""
    divisor: Tensor | None = field(init=False)
    """(B, 1) what the logits are divided by (1 for greedy rows); None when every row's is 1."""
    truncating: Tensor = field(init=False)
    """(B,) rows that keep only their top-k / top-p tokens."""
    flags: tuple[bool, ...] = field(init=False)
    """(any greedy, all greedy, any min_p, any truncating, all truncating)."""

    def __post_init__(self) -> None:
        greedy = self.temperature <= 0
        divisor = torch.where(greedy, torch.ones_like(self.temperature), self.temperature)
        truncating = ((self.top_k > 0) & (self.top_k < self.vocab_size)) | (self.top_p < 1.0)
        set_ = object.__setattr__
        set_(self, "greedy", greedy)
        set_(self, "divisor", None if bool((divisor == 1).all()) else divisor[:, None])
        set_(self, "truncating", truncating)
        set_(self, "flags", (bool(greedy.any()), bool(greedy.all()),
                             self.min_p is not None and bool((self.min_p > 0).any()),
                             bool(truncating.any()), bool(truncating.all())))


def sample_tokens(
    logits: Tensor,
    temperature: Tensor,
    top_k: Tensor,
    top_p: Tensor,
    uniforms: Tensor,
    min_p: Tensor | None = None,
) -> Tensor:
    """Draw one token per row from ``logits`` (B, V) with per-row settings (each (B,)).

    Temperature 0 is argmax.  ``top_k`` 0, ``top_p`` 1 and ``min_p`` 0 (or None) disable truncation;
    ``min_p`` keeps the tokens at least ``min_p`` times as likely as the most likely one.  ``uniforms`` in
    [0, 1) are the rows' random numbers: the draw is an inverse-CDF lookup (cumulative sum +
    ``searchsorted``), much faster than ``torch.multinomial`` for large vocabularies.  Masked
    tokens carry ``-inf`` and are never drawn.
    """
    return draw_tokens(logits, DrawSettings(temperature, top_k, top_p, min_p, logits.shape[-1]), uniforms)


def draw_tokens(logits: Tensor, settings: DrawSettings, uniforms: Tensor) -> Tensor:
    """:func:`sample_tokens` with the settings' implications already worked out (:class:`DrawSettings`)."""
    V = logits.shape[-1]
    any_greedy, all_greedy, any_min_p, any_truncating, all_truncating = settings.flags
    if all_greedy:
        return logits.argmax(dim=-1)
    scaled = logits if settings.divisor is None else logits / settings.divisor
    if any_min_p:
        min_p = settings.min_p
        # p_i >= min_p * p_max  <=>  scaled_i >= max(scaled) + log(min_p)
        floor = scaled.max(dim=-1, keepdim=True).values + torch.log(min_p.clamp(min=1e-30))[:, None]
        scaled = scaled.masked_fill((scaled < floor) & (min_p[:, None] > 0), float("-inf"))
    # A row that truncates draws in the order of its ranked tokens, one that does not in the order of
    # the vocabulary, whatever its neighbours do: a seeded row writes the same text alone or batched.
    drawn = None if all_truncating else _inverse_cdf(scaled, uniforms)
    if any_truncating:
        top_k, top_p = settings.top_k, settings.top_p
        ranked, order = scaled.sort(dim=-1, descending=True)  # (B, V)
        ranks = torch.arange(V, device=logits.device)[None, :]
        k = torch.where(top_k > 0, top_k, torch.full_like(top_k, V))[:, None]
        ranked = ranked.masked_fill(ranks >= k, float("-inf"))
        probs = torch.softmax(ranked, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass ranked above each token
        ranked = ranked.masked_fill((before >= top_p[:, None]) & (ranks > 0), float("-inf"))
        drawn_ranked = order.gather(1, _inverse_cdf(ranked, uniforms)[:, None])[:, 0]
        drawn = drawn_ranked if drawn is None else torch.where(settings.truncating, drawn_ranked, drawn)
    if not any_greedy:
        return drawn
    return torch.where(settings.greedy, logits.argmax(dim=-1), drawn)


def _inverse_cdf(scaled: Tensor, uniforms: Tensor) -> Tensor:
    """Each row's token whose cumulative probability (under softmax of ``scaled``) first passes its uniform."""
    cdf = torch.softmax(scaled, dim=-1).cumsum(dim=-1)
    targets = (uniforms * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, targets, right=True).clamp_(max=scaled.shape[-1] - 1)[:, 0]


class Constraint(abc.ABC):
    """A form that masks a row's choices; the forms of :mod:`textgen.forms` subclass it.

    At each step of its row the sampler calls :meth:`set_remaining`, then :meth:`allowed`; after
    the draw :meth:`advance`; then, to decide whether the row ends, :meth:`is_complete` and (once
    ``max_new_chars`` are written) :meth:`must_continue`.  A form that has no use for the last two
    inherits their defaults: the budget is ignored, and the row ends at ``max_new_chars``.
    """

    @abc.abstractmethod
    def allowed(self) -> Tensor | None:
        """(V,) bool mask of the tokens allowed next, or None for no restriction."""

    @abc.abstractmethod
    def advance(self, token: int, text: str) -> None:
        """Record the chosen token and the text it completed ("" inside a UTF-8 sequence)."""

    @abc.abstractmethod
    def is_complete(self) -> bool:
        """Whether the form is finished (the row then ends with ``form_complete``)."""

    def set_remaining(self, chars: int) -> None:
        """Told before each :meth:`allowed`: ``max_new_chars`` minus the characters written so far
        (may be <= 0), so that a form can close what it opened in time.  The default ignores it."""

    def must_continue(self) -> bool:
        """True while the text may not end yet: the row then runs past ``max_new_chars`` until it
        turns False.  The default: False."""
        return False


# --------------------------------------------------------------------------- rows
@dataclass
class Sample:
    """One finished sample.

    The log-probabilities are the model's own (its softmax before temperature, truncation,
    penalty or form masks), of the returned text: a stop string is not part of it.
    """

    text: str
    finish_reason: str  # "length" | "stop" | "form_complete"
    generated_chars: int
    logprob: float | None = None
    """Sum of ``char_logprobs`` (nats); None unless the request tracked log-probabilities."""
    char_logprobs: list[float] | None = None
    """One log-probability per character of ``text`` (a character of byte pieces: their sum)."""
    top_logprobs: list[dict[str, float]] | None = None
    """Per character of ``text``, the ``top_logprobs`` most likely whole characters there."""
    index: int = 0
    """Which candidate of the request this is (its seed is the request's seed + index)."""

    @property
    def logprob_per_char(self) -> float:
        """Mean log-probability per returned character: what ``best_of`` ranks by (-inf if empty)."""
        if not self.char_logprobs:
            return float("-inf")
        return sum(self.char_logprobs) / len(self.char_logprobs)


def select_best(samples: Sequence[Sample], n: int) -> list[Sample]:
    """The ``n`` samples with the highest log-probability per character, best first (ties: lower index)."""
    return sorted(samples, key=lambda s: (-s.logprob_per_char, s.index))[:n]


@dataclass
class Row:
    """One sequence being generated (internal state of :class:`DecodeBatch`)."""

    params: SamplingParams
    tokens: list[int]
    generator: torch.Generator
    constraint: Constraint | None = None
    tag: object = None
    text: str = ""
    emitted: int = 0
    chars: int = 0
    segment_steps: int = 0
    utf8: Utf8Decoder = field(default_factory=Utf8Decoder)
    """The row's byte pieces so far: which may come next, and the characters they complete."""
    char_logprobs: list[float] = field(default_factory=list)
    top: list[dict[str, float]] = field(default_factory=list)
    index: int = 0
    finish_reason: str | None = None
    _uniforms: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def uniform(self) -> float:
        """The row's next random number in [0, 1): its generator's stream, drawn a block at a time
        (one ``torch.rand`` call costs as much as 64 numbers; the values are those of single draws)."""
        if not self._uniforms:
            self._uniforms = torch.rand(_UNIFORM_BLOCK, generator=self.generator).tolist()[::-1]
        return self._uniforms.pop()

    def sample(self) -> Sample:
        sample = Sample(self.text, self.finish_reason or "length", self.chars, index=self.index)
        if self.params.wants_logprobs:
            sample.char_logprobs = self.char_logprobs[: len(self.text)]  # a stop string is cut off
            sample.logprob = math.fsum(sample.char_logprobs)
        if self.params.top_logprobs:
            sample.top_logprobs = self.top[: len(self.text)]
        return sample


@dataclass
class _RowSettings:
    """The sampling parameters of a batch's rows, each (B,)."""

    draw: DrawSettings
    penalty: Tensor
    penalised: bool
    """Some row has a repetition penalty other than 1."""


class PieceTables:
    """What the sampler reads from a tokenizer's vocabulary, once per tokenizer (:func:`piece_tables`)."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        V = tokenizer.vocab_size
        specials = (UNK_ID, BOS_ID, EOS_ID, PAD_ID)
        #: Each piece's text; "" for byte pieces (their text is a Utf8Decoder's) and special ids.
        self.text: list[str] = [
            "" if tokenizer.byte_values[i] >= 0 or i in specials else tokenizer.decode([i]) for i in range(V)
        ]
        byte_values = torch.tensor(tokenizer.byte_values)
        is_byte = byte_values >= 0
        is_special = torch.zeros(V, dtype=torch.bool)
        is_special[list(specials)] = True
        masks = torch.tensor(utf8.allowed_bytes())[:, byte_values.clamp(min=0)] & is_byte  # (STATES, V)
        masks[utf8.BETWEEN] |= ~is_byte & ~is_special
        #: (utf8.STATES, V): the pieces allowed in each state of a row's Utf8Decoder (the byte pieces
        #: it allows; between characters also every piece that is text).
        self.utf8_masks = masks
        whole = [bool(text) for text in self.text]
        #: (V,): the pieces that are whole characters (what top_logprobs ranks).
        self.whole_chars = torch.tensor(whole, dtype=torch.bool)
        self.n_whole = max(1, sum(whole))


piece_tables = per_tokenizer(PieceTables)


class _OneDnnSwitch:
    """torch's oneDNN (mkldnn) switch for a block.  The switch is process-wide, so blocks that overlap
    on several threads (the decoding workers of a server's models) share it: the first to
    enter sets it, the last to leave restores it.  (Overlapping blocks that want different settings
    get the first one's.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._before = True

    @contextlib.contextmanager
    def __call__(self, enabled: bool):
        with self._lock:
            if not self._users:
                self._before = torch.backends.mkldnn.enabled
                torch.backends.mkldnn.enabled = enabled
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    torch.backends.mkldnn.enabled = self._before


_onednn = _OneDnnSwitch()


def _make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") % _SEED_MODULUS
    generator.manual_seed(seed)
    return generator


class DecodeBatch:
    """A growing and shrinking batch of rows decoded together, one token per :meth:`step`."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device | None = None,
        onednn: bool = False,
        on_read: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_read(rows, seconds)`` is told of every context read (rows joining, or re-reading their
        context every ``target_chars`` tokens), for a server's metrics."""
        self.loaded = loaded
        self.on_read = on_read
        # oneDNN's recurrent kernels pay off on long training sequences but make a one-token
        # decoding step several times slower on CPU (measured: 4x at batch 1, 2x512 LSTM).
        self.onednn = onednn
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(device) if device is not None else next(self.model.parameters()).device
        self.context_chars = loaded.info.context_chars  # tokens, like the training windows
        self.segment_chars = loaded.info.target_chars  # tokens
        V = self.tokenizer.vocab_size
        pieces = piece_tables(self.tokenizer)
        self.piece_text = pieces.text
        self.utf8_masks = pieces.utf8_masks.to(self.device)
        self.whole_chars = pieces.whole_chars.to(self.device)
        self.n_whole = pieces.n_whole
        # Pieces never seen in training (byte pieces of characters outside the corpus) keep a small
        # probability a short training run never drove to zero: a Shakespeare model would write
        # control characters or kana now and then.  None when the export does not say.
        untrained = loaded.info.untrained_pieces
        self.trained: Tensor | None = None
        if untrained:
            self.trained = torch.ones(V, dtype=torch.bool)
            self.trained[torch.tensor(untrained, dtype=torch.long)] = False
            self.trained = self.trained.to(self.device)
        #: (utf8.STATES, V): the pieces an unconstrained row may not draw in each UTF-8 state.
        self.blocked_by_state = ~self._narrow_to_trained(self.utf8_masks)
        self.rows: list[Row] = []
        self.state: DecoderState | None = None
        self.seen: Tensor | None = None  # (B, V) tokens in each row's prompt and text
        self._settings: _RowSettings | None = None  # the rows' parameters as tensors, until rows change

    # ----------------------------------------------------------------- membership
    def make_row(
        self,
        prompt: str,
        params: SamplingParams,
        *,
        index: int = 0,
        constraint: Constraint | None = None,
        tag: object = None,
    ) -> Row:
        """A row for ``prompt``; sample ``index`` of a seeded request uses seed + index."""
        try:
            ids = self.tokenizer.encode(prompt)
        except TokenizerError as error:
            raise SamplingError("prompt", str(error)) from error
        seed = None if params.seed is None else (params.seed + index) % _SEED_MODULUS
        return Row(params=params, tokens=[BOS_ID, *ids], generator=_make_generator(seed),
                   constraint=constraint, tag=tag, index=index)

    def add(self, rows: Sequence[Row]) -> None:
        """Join ``rows`` to the batch: their contexts are encoded now, they decode from the next step."""
        if not rows:
            return
        new_state = self._start([row.tokens for row in rows])
        seen = torch.zeros((len(rows), self.tokenizer.vocab_size), dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):
            seen[i, row.tokens[1:]] = True
        self.state = new_state if self.state is None else DecoderState.cat([self.state, new_state])
        self.seen = seen if self.seen is None else torch.cat([self.seen, seen])
        self.rows.extend(rows)
        self._settings = None
        for row in rows:
            self._finish_if_done(row)
        self.remove([row for row in rows if row.finished])

    def remove(self, rows: Sequence[Row]) -> None:
        """Drop rows (finished, or their client went away)."""
        drop = {id(row) for row in rows}
        keep = [i for i, row in enumerate(self.rows) if id(row) not in drop]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        self._settings = None
        if not keep:
            self.state, self.seen = None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.state = self.state.select(index)
        self.seen = self.seen.index_select(0, index)

    def __len__(self) -> int:
        return len(self.rows)

    def _start(self, streams: Sequence[list[int]]) -> DecoderState:
        C = self.context_chars
        contexts = torch.full((len(streams), C), PAD_ID, dtype=torch.long)
        lengths = torch.empty(len(streams), dtype=torch.long)
        for i, stream in enumerate(streams):
            tail = stream[-C:]
            contexts[i, : len(tail)] = torch.tensor(tail)
            lengths[i] = len(tail)
        started = time.perf_counter()
        with torch.inference_mode(), _onednn(self.onednn):
            state = self.model.start(contexts.to(self.device), lengths.to(self.device))
        if self.on_read is not None:
            self.on_read(len(streams), time.perf_counter() - started)
        return state

    # ----------------------------------------------------------------- decoding
    @torch.inference_mode()
    def step(self) -> list[tuple[Row, str]]:
        """Advance every row by one token; returns (row, newly releasable text) for each row.

        Rows that finish during the step are removed from the batch (check ``row.finished``).
        """
        if not self.rows:
            return []
        restart = [i for i, row in enumerate(self.rows) if row.segment_steps >= self.segment_chars]
        if restart:
            fresh = self._start([self.rows[i].tokens for i in restart])
            self.state = self.state.assign(torch.tensor(restart, device=self.device), fresh)
            for i in restart:
                self.rows[i].segment_steps = 0
        inputs = torch.tensor([row.tokens[-1] for row in self.rows], device=self.device)
        with _onednn(self.onednn):
            logits, self.state = self.model.step(inputs, self.state)  # (B, V)
        logits = logits.float()
        chosen = self._choose(logits)
        self._record_logprobs(logits, chosen)
        if self._row_settings().penalised:  # only a penalised row reads it; a row joining starts its own
            self.seen[torch.arange(len(self.rows), device=self.device), chosen] = True
        out, done = [], []
        for row, token in zip(self.rows, chosen.tolist()):
            out.append((row, self._advance(row, token)))
            if row.finished:
                done.append(row)
        self.remove(done)
        return out

    def _record_logprobs(self, logits: Tensor, chosen: Tensor) -> None:
        """Add the chosen tokens' model log-probabilities (and the top characters) to the rows that track them."""
        rows = self.rows
        if not any(row.params.wants_logprobs for row in rows):
            return
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(1, chosen[:, None])[:, 0].tolist()
        chars = [self.tokenizer.chars_per_token[token] for token in chosen.tolist()]
        k = max(row.params.top_logprobs for row in rows)
        top_values = top_ids = None
        if k:
            ranked = logprobs.masked_fill(~self.whole_chars, float("-inf")).topk(min(k, self.n_whole), dim=-1)
            top_values, top_ids = ranked.values.tolist(), ranked.indices.tolist()
        for i, row in enumerate(rows):
            if not row.params.wants_logprobs:
                continue
            add_token_logprob(row.char_logprobs, chars[i], picked[i])
            if row.params.top_logprobs and chars[i] >= 1:
                keep = row.params.top_logprobs
                top = {self.piece_text[t]: v for t, v in zip(top_ids[i][:keep], top_values[i][:keep])}
                row.top.extend([top] * chars[i])

    def _choose(self, logits: Tensor) -> Tensor:
        rows = self.rows
        states = torch.tensor([row.utf8.state for row in rows], device=self.device)
        constrained, masks = [], []
        for i, row in enumerate(rows):
            if row.constraint is not None:
                row.constraint.set_remaining(row.params.max_new_chars - row.chars)
                mask = row.constraint.allowed()
                if mask is not None:
                    constrained.append(i)
                    masks.append(mask)
        if masks:  # one masked AND for all constrained rows
            allowed = self.utf8_masks[states]
            index = torch.tensor(constrained, device=self.device)
            allowed[index] &= torch.stack(masks).to(self.device)
            blocked = ~self._narrow_to_trained(allowed)
        else:  # no row constrained this step: each state's blocked pieces are known in advance
            blocked = self.blocked_by_state[states]
        logits = logits.masked_fill(blocked, float("-inf"))
        settings = self._row_settings()
        if settings.penalised:
            logits = apply_repetition_penalty(logits, self.seen, settings.penalty)
        uniforms = torch.tensor([row.uniform() for row in rows], device=self.device)
        return draw_tokens(logits, settings.draw, uniforms)

    def _narrow_to_trained(self, allowed: Tensor) -> Tensor:
        """``allowed`` (B, V) less the untrained pieces, except in a row whose every choice is untrained."""
        if self.trained is None:
            return allowed
        narrowed = allowed & self.trained
        return torch.where(narrowed.any(dim=1, keepdim=True), narrowed, allowed)

    def _row_settings(self) -> _RowSettings:
        """The rows' sampling parameters as (B,) tensors, built once for each membership of the batch."""
        if self._settings is None:
            params = [row.params for row in self.rows]
            penalty = torch.tensor([p.repetition_penalty for p in params], device=self.device)
            draw = DrawSettings(temperature=torch.tensor([p.temperature for p in params], device=self.device),
                                top_k=torch.tensor([p.top_k for p in params], device=self.device),
                                top_p=torch.tensor([p.top_p for p in params], device=self.device),
                                min_p=torch.tensor([p.min_p for p in params], device=self.device),
                                vocab_size=self.tokenizer.vocab_size)
            self._settings = _RowSettings(draw=draw, penalty=penalty, penalised=bool((penalty != 1.0).any()))
        return self._settings

    def _advance(self, row: Row, token: int) -> str:
        """Append ``token`` to ``row``; returns the text that can be released to the client."""
        row.tokens.append(token)
        row.segment_steps += 1
        value = self.tokenizer.byte_values[token]
        piece = self.piece_text[token] if value < 0 else row.utf8.feed(value)
        if row.constraint is not None:
            row.constraint.advance(token, piece)
        if piece:
            row.text += piece
            row.chars += len(piece)
        return self._release(row)

    def _finish_if_done(self, row: Row) -> None:
        if row.finished or row.utf8.incomplete:
            return
        constraint = row.constraint
        if constraint is not None and constraint.is_complete():
            row.finish_reason = "form_complete"
        elif row.chars >= row.params.max_new_chars and (constraint is None or not constraint.must_continue()):
            row.finish_reason = "length"

    def _release(self, row: Row) -> str:
        stops = row.params.stop
        if stops:
            window_start = max(0, row.emitted - max(map(len, stops)))
            hits = [pos for pos in (row.text.find(s, window_start) for s in stops) if pos >= 0]
            if hits:
                row.text = row.text[: min(hits)]
                row.finish_reason = "stop"
        self._finish_if_done(row)
        end = len(row.text)
        if not row.finished and stops:
            end -= _held_back(row.text, stops)
        end = max(end, row.emitted)
        released, row.emitted = row.text[row.emitted:end], end
        return released


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


# --------------------------------------------------------------------------- one-call API
def generate(
    loaded: LoadedModel,
    prompt: str = "",
    params: SamplingParams | None = None,
    *,
    on_text: Callable[[int, str], None] | None = None,
    constraint: Callable[[int], Constraint | None] | None = None,
) -> list[Sample]:
    """Generate ``params.n`` samples after ``prompt``; ``params.best_of`` candidates as one batch.

    Without ``best_of`` the samples come in order and ``on_text(index, text)`` receives their text
    as it is produced.  With ``best_of`` > n the ``n`` best candidates are returned, best first
    (:func:`select_best`), and ``on_text`` is not called: a candidate's rank is known only once
    every candidate is done.  ``constraint(index)`` builds each candidate's form constraint.
    """
    params = params or SamplingParams()
    batch = DecodeBatch(loaded)
    rows = [
        batch.make_row(prompt, params, index=i, constraint=constraint(i) if constraint else None, tag=i)
        for i in range(params.candidates)
    ]
    ranked = params.candidates > params.n
    batch.add(rows)
    while len(batch):
        for row, text in batch.step():
            if text and on_text is not None and not ranked:
                on_text(row.tag, text)
    samples = [row.sample() for row in rows]
    return select_best(samples, params.n) if ranked else samples
