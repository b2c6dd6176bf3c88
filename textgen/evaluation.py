"""Bits per character: the one scoring routine shared by validation and ``textgen.evaluate``."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from textgen.data.windows import DocumentStarts, TiledWindows, Window, window_at
from textgen.export import LoadedModel
from textgen.models import Seq2SeqLM
from textgen.tokenizer import BOS_ID, PAD_ID, add_token_logprob


def score_batch(model: Seq2SeqLM, batch: Window, chars_per_token: Tensor) -> tuple[Tensor, Tensor]:
    """Summed negative log-likelihood (nats) of a batch's targets, and how many characters they are.

    Costs are summed per token but counted per *character*: a character outside the vocabulary
    is several byte tokens and counts once.
    """
    context, lengths, inputs, targets = batch
    logits, _ = model(context, inputs, context_lengths=lengths)  # (B, T, V)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD_ID, reduction="sum")
    chars = chars_per_token[targets.clamp(min=0)].masked_fill(targets == PAD_ID, 0).sum()
    return nll, chars


def score_batches(model: Seq2SeqLM, batches: Iterable[Window], chars_per_token: Tensor) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and characters of ``batches``, each moved to the device
    of ``chars_per_token``.  The caller sets eval mode and turns gradients off."""
    device = chars_per_token.device
    total_nll, total_chars = 0.0, 0
    for batch in batches:
        nll, chars = score_batch(model, [t.to(device) for t in batch], chars_per_token)
        total_nll += nll.item()
        total_chars += int(chars.item())
    return total_nll, total_chars


@dataclass
class EvalResult:
    """Score of a model on a text."""

    bpc: float
    """Bits per character."""
    loss: float
    """Nats per character."""
    chars: int
    tokens: int
    seconds: float
    chars_per_second: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def evaluate_text(
    loaded: LoadedModel,
    text: str,
    batch_size: int = 32,
    max_chars: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score ``text`` with consecutive windows, each with the context validation gives it (stopping
    at a document's start when the model was trained so)."""
    if max_chars is not None:
        text = text[:max_chars]
    ids = loaded.tokenizer.encode(text)
    separator = loaded.info.document_separator
    documents = DocumentStarts(ids, loaded.tokenizer.encode(separator)) if separator else None
    dataset = TiledWindows(torch.tensor(ids), loaded.info.context_chars, loaded.info.target_chars, documents)
    device = next(loaded.model.parameters()).device
    table = torch.tensor(loaded.tokenizer.chars_per_token, device=device)
    loader = DataLoader(dataset, batch_size=batch_size)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluate", unit="batch")
    start = time.perf_counter()
    total_nll, total_chars = score_batches(loaded.model, loader, table)
    seconds = time.perf_counter() - start
    loss = total_nll / max(total_chars, 1)
    return EvalResult(bpc=loss / math.log(2), loss=loss, chars=total_chars, tokens=len(ids),
                      seconds=seconds, chars_per_second=total_chars / seconds if seconds else 0.0)


def continuation_logprobs(loaded: LoadedModel, prompt: str, text: str, batch_size: int = 32) -> list[float]:
    """The model's log-probability (nats) of each character of ``text`` written after ``prompt``.

    Read as generation reads it: windows of ``target_chars`` tokens from where ``text`` starts,
    each with the ``context_chars`` tokens before it as context, scored by the model's forward
    pass (not its step-by-step decoding).  A character of several byte pieces gets their sum.
    """
    return continuations_logprobs(loaded, prompt, [text], batch_size)[0]


@torch.inference_mode()
def continuations_logprobs(loaded: LoadedModel, prompt: str, texts: list[str],
                           batch_size: int = 32) -> list[list[float]]:
    """:func:`continuation_logprobs` of each of ``texts`` after the same ``prompt``, their windows
    scored together in batches (one forward pass for a few short texts)."""
    tok, info = loaded.tokenizer, loaded.info
    head = [BOS_ID, *tok.encode(prompt)]
    encoded = [tok.encode(text) for text in texts]
    windows, owners = [], []
    for k, ids in enumerate(encoded):
        stream = torch.tensor(head + ids)
        for p in range(len(head), len(stream), info.target_chars):
            windows.append(window_at(stream, p, info.context_chars, info.target_chars))
            owners.append(k)
    device = next(loaded.model.parameters()).device
    token_logprobs: list[list[float]] = [[] for _ in texts]
    for first in range(0, len(windows), batch_size):
        chunk = windows[first:first + batch_size]
        context, lengths, inputs, targets = (torch.stack(parts).to(device) for parts in zip(*chunk))
        used = int((targets != PAD_ID).sum(dim=1).max())  # the decoder reads left to right: padding
        inputs, targets = inputs[:, :used], targets[:, :used]  # after the last target changes nothing
        logits, _ = loaded.model(context, inputs, context_lengths=lengths)
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(2, targets.clamp(min=0)[..., None])[..., 0]
        for row, owner in enumerate(owners[first:first + batch_size]):
            token_logprobs[owner].extend(logprobs[row][targets[row] != PAD_ID].tolist())
    out = []
    for ids, logprobs in zip(encoded, token_logprobs):
        chars: list[float] = []
        for token, logprob in zip(ids, logprobs):
            add_token_logprob(chars, tok.chars_per_token[token], logprob)
        out.append(chars)
    return out
