"""Architecture probe: several models trained on the very same batches with the same optimizer.

    TEXTGEN_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/same_batches.py \
        --steps 100 --hidden 256 --out docs/results/same-batches.json

Variants (``--variants``):

* ``plain``: a textbook char-rnn written here in a few lines (``nn.Embedding`` -> ``nn.LSTM`` ->
  ``nn.Linear``, zero initial state, reading only the decoder inputs): the reference.
* ``dec``: textgen's model without encoder (burns the context in through the decoder).
* ``enc-replace``: with the bi-LSTM encoder, the attention output *replacing* the decoder output
  (``model.attention_residual=false``, textgen's model before that option existed).
* ``enc``: with the encoder, attention *added* to the decoder output (the default).

Every variant sees identical batches (64 context + 128 target characters) in the same order and
is trained by the same loop (AdamW lr 2e-3, betas 0.9/0.99, weight decay 0.01, gradient clipping
1.0, constant learning rate); the score is the mean loss in nats per character over ``--val-batches``
fixed random validation windows. A step-for-step comparison of what a model learns, independent
of speed (train_budget.py compares at equal time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from train_throughput import draw_batches  # benchmarks/ is on sys.path when run as a script

from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.models import ModelConfig, Seq2SeqLM
from textgen.tokenizer import PAD_ID, CharTokenizer

VARIANTS = ("plain", "dec", "enc-replace", "enc")


class PlainCharRNN(nn.Module):
    """The reference char-rnn: embedding, stacked LSTM from a zero state, linear head."""

    def __init__(self, vocab_size: int, embedding: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.rnn = nn.LSTM(embedding, hidden, layers, batch_first=True, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, context, inputs, targets, context_lengths=None):
        out, _ = self.rnn(self.dropout(self.embedding(inputs)))
        logits = self.head(self.dropout(out))
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)


def build(variant: str, vocab_size: int, args: argparse.Namespace) -> nn.Module:
    if variant == "plain":
        return PlainCharRNN(vocab_size, args.embedding, args.hidden, args.layers, args.dropout)
    return Seq2SeqLM(ModelConfig(
        vocab_size=vocab_size, embedding=args.embedding, hidden=args.hidden, layers=args.layers,
        dropout=args.dropout, attention_residual=variant != "enc-replace",
        encoder={"layers": 0 if variant == "dec" else 1, "hidden": args.encoder_hidden},
    ))


def train_and_score(variant: str, vocab_size: int, train: list, val: list, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = build(variant, vocab_size, args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    started = time.perf_counter()
    model.train()
    for step, (context, lengths, inputs, targets) in enumerate(train, start=1):
        _, loss = model(context, inputs, targets, context_lengths=lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0:
            print(f"  {variant}: step {step}/{len(train)}, train loss {loss.item():.3f}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        losses = [model(c, i, t, context_lengths=n)[1].item() for c, n, i, t in val]
    return {"variant": variant, "params": sum(p.numel() for p in model.parameters()),
            "val_loss": round(sum(losses) / len(losses), 4), "train_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="shakespeare")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--target", type=int, default=128)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--encoder-hidden", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val-batches", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from textgen.train import CONFIG_PATH

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        data = compose("train", overrides=[f"data={args.data}"]).data
    corpus = load_corpus(CorpusConfig.from_mapping(OmegaConf.to_container(data, resolve=True)))
    tokenizer = CharTokenizer.train_on_text(corpus.train)

    def batches(text: str, count: int, seed: int) -> list:
        ids = torch.tensor(tokenizer.encode(text))
        return draw_batches(ids, count, args.batch, args.context, args.target, seed)

    train, val = batches(corpus.train, args.steps, args.seed), batches(corpus.val, args.val_batches, args.seed + 1)
    results = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(), "runs": []}
    for variant in args.variants:
        results["runs"].append(train_and_score(variant, tokenizer.vocab_size, train, val, args))
        row = results["runs"][-1]
        print(f"{variant}: val loss {row['val_loss']:.4f} nats/char after {args.steps} steps "
              f"({row['params']:,} params, {row['train_seconds']} s)", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
