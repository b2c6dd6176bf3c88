"""Train a model, then export the best one: ``python -m textgen.train [overrides]``.

Examples::

    python -m textgen.train data=tang model=gru trainer.max_steps=2000
    python -m textgen.train -m model=lstm,gru            # one run, one export per model
    python -m textgen.train data=text data.path=my.txt model.encoder.layers=0
    python -m textgen.train resume=true                  # continue the newest run of this name

Each run writes into its own Hydra folder (``outputs/<name>/<time>/``: checkpoints, logs, the
resolved config); the best model by validation bits per character is exported to
``checkpoints/<name>/``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from textgen.cli import command_line
from textgen.finetune import prepare_run
from textgen.export import export_model, machine_description
from textgen.models import ModelConfig

log = logging.getLogger("textgen.train")
CONFIG_PATH = str(Path(__file__).resolve().parent.parent / "conf")


def run_name(corpus: str, cell: str, encoder_layers: int) -> str:
    """``<corpus>-<cell>``, with ``-dec`` for a decoder-only model."""
    return f"{corpus}-{cell}" + ("" if int(encoder_layers) > 0 else "-dec")


if not OmegaConf.has_resolver("textgen.run_name"):
    OmegaConf.register_new_resolver("textgen.run_name", run_name)


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message names the setting to change."""


def find_resume_checkpoint(resume: bool | str, run_dir: Path, multirun: bool) -> str | None:
    """The checkpoint to continue from: a given path, or the newest ``last.ckpt`` of this name."""
    if resume in (False, None, "false", "False"):
        return None
    if resume not in (True, "true", "True"):
        path = Path(str(resume)).expanduser()
        if not path.is_file():
            raise TrainingError(f"resume={resume}: no such checkpoint file")
        return str(path)
    # A single run's folder is outputs/<name>/<time>: its siblings are earlier runs of the same name.
    candidates = list(run_dir.glob("checkpoints/last*.ckpt"))
    if not multirun:
        candidates += list(run_dir.parent.glob("*/checkpoints/last*.ckpt"))
    if not candidates:
        raise TrainingError(f"resume=true: no last.ckpt under {run_dir if multirun else run_dir.parent}")
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


def run(cfg: DictConfig) -> Path | None:
    """Train as ``cfg`` says and export the best model; returns the export folder (rank 0)."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import instantiate, to_absolute_path

    from textgen.training.datamodule import WindowDataModule
    from textgen.training.module import LanguageModelTask

    started = time.time()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    data = cfg.data
    # Token ids (memory-mapped for large corpora) and tokenizer; with init_from, the export's.
    start = prepare_run(cfg)
    corpus, tokenizer, train_ids, val_ids = start.corpus, start.tokenizer, start.corpus.train_ids, start.corpus.val_ids
    if len(train_ids) <= data.target_chars:
        raise TrainingError(
            f"corpus {corpus.name!r}: the train split has {len(train_ids)} tokens, fewer than one "
            f"window (data.target_chars={data.target_chars}); use a longer text or smaller windows"
        )
    datamodule = WindowDataModule(
        train_ids, val_ids, data.context_chars, data.target_chars, data.batch_size,
        val_batch_size=data.val_batch_size, stride=data.stride, num_workers=data.num_workers, seed=cfg.seed,
    )
    if len(datamodule.train_set) < data.batch_size:
        raise TrainingError(
            f"corpus {corpus.name!r}: the train split gives {len(datamodule.train_set)} training windows, "
            f"fewer than one batch (data.batch_size={data.batch_size}, data.stride={data.stride}); "
            "use a longer text, a smaller batch or stride"
        )
    model_values = OmegaConf.to_container(cfg.model, resolve=True)
    model_config = ModelConfig.from_dict({**model_values, "vocab_size": tokenizer.vocab_size})
    task = LanguageModelTask(
        model_config, tokenizer.chars_per_token,
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    start.load_weights(task.model)
    log.info("model: %s, %s parameters", model_config, f"{task.model.num_params():,}")

    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    ckpt_path = find_resume_checkpoint(cfg.resume, run_dir, multirun)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    fit_started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    train_seconds = time.perf_counter() - fit_started

    if trainer.interrupted:
        log.warning("training was interrupted; its checkpoints are in %s", run_dir / "checkpoints")
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    best_score = float(checkpoint.best_model_score) if best_path else math.inf
    best_step = trainer.global_step
    if task.last_val_step != trainer.global_step:
        # The run ended between validations: score the final weights too.
        trainer.validate(task, datamodule=datamodule, verbose=False)
        final_score = float(trainer.callback_metrics["val_bpc"])
        if final_score < best_score:
            best_path, best_score = "", final_score
    if best_path:
        # Our own checkpoint from this run: Lightning's format needs the full unpickler.
        best = torch.load(best_path, map_location="cpu", weights_only=False)
        task.load_state_dict(best["state_dict"])
        best_step = int(best["global_step"])
    if not trainer.is_global_zero:
        return None

    world = trainer.world_size
    chars_seen = trainer.global_step * data.batch_size * data.target_chars * world
    metrics = {
        "val_bpc": best_score,
        "val_loss": best_score * math.log(2),
        "best_step": best_step,
        "steps": trainer.global_step,
        "chars_seen": chars_seen,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.time() - started, 2),
        "train_chars_per_second": round(chars_seen / train_seconds, 1) if train_seconds else None,
        "params": task.model.num_params(),
        "vocab_size": tokenizer.vocab_size,
        "corpus": corpus.name,
        "corpus_origin": corpus.origin,
        "world_size": world,
        "machine": machine_description(),
        "command": "python -m textgen.train " + " ".join(sys.argv[1:]),
        "run_dir": str(run_dir),
        **start.metrics,
    }
    dest = Path(to_absolute_path(cfg.export.dir)) / cfg.export.name
    export_model(
        dest, task.model, tokenizer, name=cfg.export.name, corpus=corpus.name,
        context_chars=data.context_chars, target_chars=data.target_chars,
        training_config=OmegaConf.to_yaml(cfg, resolve=True), metrics=metrics, dtype=cfg.export.dtype,
    )
    log.info("exported %s (val bpc %.4f at step %d) to %s", cfg.export.name, best_score, best_step, dest)
    print(f"exported {dest}  val_bpc={best_score:.4f}  steps={trainer.global_step}", flush=True)
    return dest


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the val bpc (for sweepers)."""
    try:
        dest = run(cfg)
    except (TrainingError, ValueError, FileNotFoundError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if dest is None:
        return None
    from textgen.export import read_metrics

    return read_metrics(dest).get("val_bpc")


def main() -> None:
    """Entry point: ``python -m textgen.train`` / ``textgen-train`` (non-ASCII values as typed)."""
    sys.argv[1:] = command_line(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
