"""Training throughput: Lightning against a plain PyTorch loop, and chars/s across model shapes.

    TEXTGEN_DATA_DIR=../shared/data python benchmarks/train_throughput.py --data shakespeare \
        --out docs/results/throughput-cpu.json

Part 1 (overhead): for each ``--models`` entry, the same model (same initial weights) is trained on
the same pre-drawn batches twice, once by a plain PyTorch loop (forward, backward, gradient
clipping, AdamW step) and once by ``pytorch_lightning.Trainer`` with textgen's
``LanguageModelTask`` (per-step loss logging and the progress bar on, as in real training;
validation and checkpointing off, since they are not part of a training step).  The two are
interleaved ``--repeats`` times and the fastest repeat of each is kept, which filters out a busy
neighbour better than the mean.  Part 2 (shapes): the plain loop alone over batch sizes and target
lengths for the default model.

Characters/s counts target characters (``batch x target_chars``) per second of training step;
the context the encoder reads is work on top of that.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from textgen.data.corpus import CorpusConfig, load_corpus
from textgen.data.windows import RandomWindows
from textgen.models import ModelConfig, Seq2SeqLM
from textgen.tokenizer import CharTokenizer

MODELS = {  # name -> model config overrides on top of conf/model/<cell>.yaml
    "lstm": {"cell": "lstm"},
    "lstm-dec": {"cell": "lstm", "encoder": {"layers": 0}},
    "gru": {"cell": "gru"},
    "gru-dec": {"cell": "gru", "encoder": {"layers": 0}},
}


class _Batches(Dataset):
    """Pre-drawn batches, served one per index (``batch_size=None`` in the loader)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index]


def model_config(name: str, vocab_size: int, extra: tuple[str, ...] = ()) -> ModelConfig:
    """``conf/model/<cell>.yaml`` with the entry's overrides and ``extra`` (``model.*=...``)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from textgen.train import CONFIG_PATH

    overrides = MODELS[name]
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={overrides['cell']}", *extra])
    values = OmegaConf.to_container(cfg.model, resolve=True)
    values["encoder"].update(overrides.get("encoder", {}))
    return ModelConfig.from_dict({**values, "vocab_size": vocab_size})


def draw_batches(ids: torch.Tensor, count: int, batch: int, context: int, target: int, seed: int) -> list:
    loader = DataLoader(RandomWindows(ids, context, target), batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    batches = []
    for item in loader:
        batches.append(item)
        if len(batches) == count:
            return batches
    raise SystemExit(f"the corpus gives only {len(batches)} batches of {batch}; need {count}")


def optimizer_factory(args: argparse.Namespace):
    return functools.partial(torch.optim.AdamW, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)


def time_plain(model: Seq2SeqLM, batches: list, warmup: int, args: argparse.Namespace) -> float:
    """Seconds for the steps after ``warmup`` of a plain PyTorch training loop."""
    model.train()
    optimizer = optimizer_factory(args)(model.parameters())
    started = None
    for index, (context, lengths, inputs, targets) in enumerate(batches):
        if index == warmup:
            started = time.perf_counter()
        _, loss = model(context, inputs, targets, context_lengths=lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
    return time.perf_counter() - started


def time_lightning(model: Seq2SeqLM, vocab_chars: list[int], batches: list, warmup: int,
                   args: argparse.Namespace) -> float:
    """Seconds for the steps after ``warmup`` of ``Trainer.fit`` with ``LanguageModelTask``."""
    import pytorch_lightning as pl

    from textgen.training.module import LanguageModelTask

    marks: dict[str, float] = {}

    class StepClock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                marks["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            marks["end"] = time.perf_counter()

    task = LanguageModelTask(model.config, vocab_chars, optimizer=optimizer_factory(args))
    task.model.load_state_dict(model.state_dict())
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=args.progress_bar, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, gradient_clip_val=args.clip, log_every_n_steps=25, callbacks=[StepClock()],
    )
    trainer.fit(task, train_dataloaders=DataLoader(_Batches(batches), batch_size=None, shuffle=False))
    return marks["end"] - marks["start"]


def measure_overhead(name: str, tokenizer: CharTokenizer, ids: torch.Tensor, args: argparse.Namespace) -> dict:
    config = model_config(name, tokenizer.vocab_size, tuple(args.set))
    torch.manual_seed(args.seed)
    initial = Seq2SeqLM(config)
    batches = draw_batches(ids, args.warmup + args.steps, args.batch, args.context, args.target, args.seed)
    plain, lightning = [], []
    for repeat in range(args.repeats):
        plain.append(time_plain(copy.deepcopy(initial), batches, args.warmup, args))
        lightning.append(time_lightning(copy.deepcopy(initial), tokenizer.chars_per_token, batches,
                                        args.warmup, args))
        print(f"  {name} repeat {repeat + 1}: plain {plain[-1]:.2f} s, lightning {lightning[-1]:.2f} s",
              file=sys.stderr, flush=True)
    chars = args.steps * args.batch * args.target
    best_plain, best_lightning = min(plain), min(lightning)
    return {
        "model": name, "params": initial.num_params(), "batch": args.batch, "context": args.context,
        "target": args.target, "steps": args.steps,
        "plain_chars_per_s": round(chars / best_plain, 1),
        "lightning_chars_per_s": round(chars / best_lightning, 1),
        "lightning_overhead_pct": round(100 * (best_lightning / best_plain - 1), 2),
        "plain_seconds": plain, "lightning_seconds": lightning,
    }


def measure_shape(tokenizer: CharTokenizer, ids: torch.Tensor, batch: int, target: int,
                  args: argparse.Namespace) -> dict:
    config = model_config(args.shape_model, tokenizer.vocab_size, tuple(args.set))
    torch.manual_seed(args.seed)
    initial = Seq2SeqLM(config)
    batches = draw_batches(ids, args.warmup + args.steps, batch, args.context, target, args.seed)
    seconds = min(time_plain(copy.deepcopy(initial), batches, args.warmup, args) for _ in range(args.repeats))
    return {"model": args.shape_model, "batch": batch, "context": args.context, "target": target,
            "plain_chars_per_s": round(args.steps * batch * target / seconds, 1)}


def markdown(results: dict) -> str:
    lines = ["| model | params | plain chars/s | Lightning chars/s | Lightning overhead |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in results["overhead"]:
        lines.append(f"| {row['model']} | {row['params']:,} | {row['plain_chars_per_s']:,.0f} | "
                     f"{row['lightning_chars_per_s']:,.0f} | {row['lightning_overhead_pct']:+.1f}% |")
    if results["shapes"]:
        lines += ["", "| model | batch | target chars | plain chars/s |", "| --- | ---: | ---: | ---: |"]
        for row in results["shapes"]:
            lines.append(f"| {row['model']} | {row['batch']} | {row['target']} | {row['plain_chars_per_s']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="shakespeare", help="a conf/data corpus")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--target", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--shape-model", default="lstm", choices=list(MODELS))
    parser.add_argument("--shape-batches", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--shape-targets", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--set", nargs="*", default=[], metavar="model.KEY=VALUE",
                        help="Hydra overrides for every model, e.g. 'model.adaptive_cutoffs=[1000,3000]'")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from textgen.train import CONFIG_PATH

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        data_cfg = compose("train", overrides=[f"data={args.data}"]).data
    corpus = load_corpus(CorpusConfig.from_mapping(OmegaConf.to_container(data_cfg, resolve=True)))
    tokenizer = CharTokenizer.train_on_text(corpus.train)
    ids = torch.tensor(tokenizer.encode(corpus.train), dtype=torch.long)

    results = {"command": "python " + " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "corpus": corpus.name,
               "model_overrides": args.set, "vocab_size": tokenizer.vocab_size,
               "overhead": [], "shapes": []}
    for name in args.models:
        print(f"overhead: {name}", file=sys.stderr, flush=True)
        results["overhead"].append(measure_overhead(name, tokenizer, ids, args))
    for batch in args.shape_batches:
        for target in args.shape_targets:
            print(f"shape: batch {batch}, target {target}", file=sys.stderr, flush=True)
            results["shapes"].append(measure_shape(tokenizer, ids, batch, target, args))
    print(markdown(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
