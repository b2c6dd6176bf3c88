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

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from textgen.atomic import atomic_write_text
from textgen.cli import command_line
from textgen.data.tokens import absent_pieces
from textgen.export import export_model, machine_description, unshipped_export_name
from textgen.models import ModelConfig
from textgen.training.start import RunStart, prepare_run

log = logging.getLogger("textgen.train")
CONFIG_PATH = str(Path(__file__).resolve().parent.parent / "conf")


def run_name(corpus: str, cell: str, encoder_layers: int) -> str:
    """``<corpus>-<cell>``, with ``-dec`` for a decoder-only model."""
    return f"{corpus}-{cell}" + ("" if int(encoder_layers) > 0 else "-dec")


def mixed_precision(accelerator: str) -> str:
    """Lightning ``precision`` for an accelerator: bf16 autocast on GPUs that have it (Ampere and
    newer), fp16 with loss scaling on older GPUs, full float32 on CPU (where bf16 autocast makes
    the recurrent layers slower: 8.8k -> 6.2k chars/s measured for an LSTM)."""
    if str(accelerator) not in ("gpu", "cuda", "auto") or not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


if not OmegaConf.has_resolver("textgen.run_name"):
    OmegaConf.register_new_resolver("textgen.run_name", run_name)
if not OmegaConf.has_resolver("textgen.precision"):
    OmegaConf.register_new_resolver("textgen.precision", mixed_precision)


#: What ``export.weights`` may choose: the best validated weights (by val bpc) or the final ones.
EXPORT_WEIGHTS = ("best", "last")


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message names the setting to change."""


def validation_bpc(model, datamodule, chars_per_token: list[int]) -> float:
    """Bits per character of ``model`` on the datamodule's whole validation set (one process)."""
    from textgen.evaluation import score_batches

    was_training = model.training
    model.eval()
    with torch.no_grad():
        nll, chars = score_batches(model, datamodule.val_dataloader(), torch.tensor(chars_per_token))
    model.train(was_training)
    return nll / max(chars, 1) / math.log(2)


def find_resume_checkpoint(resume: bool | str, run_dir: Path, multirun: bool, name: str) -> str | None:
    """The checkpoint to continue from: a given path, or the newest complete ``last.ckpt`` of this name.

    ``resume=true`` searches this run's folder and, for a single run in the default layout
    (``outputs/<name>/<time>``), the folders of earlier runs of the same name; a multirun job, or a
    run given its own ``hydra.run.dir``, searches only its own folder (the folders beside it belong
    to other runs).  ``resume=auto`` does the same but starts
    afresh when there is none (a re-run of the same command, a requeued cluster job).  A file cut
    short by a crash is skipped with a warning, and the next newest is taken.
    """
    from textgen.training.checkpointing import is_complete_checkpoint

    if resume in (False, None, "false", "False"):
        return None
    if resume not in (True, "true", "True", "auto"):
        path = Path(str(resume)).expanduser()
        if not path.is_file():
            raise TrainingError(f"resume={resume}: no such checkpoint file")
        if not is_complete_checkpoint(path):
            raise TrainingError(f"resume={resume}: not a complete checkpoint (a write cut short?)")
        return str(path)
    # A single run's default folder is outputs/<name>/<time>: its siblings are earlier runs of the same name.
    candidates = list(run_dir.glob("checkpoints/last*.ckpt"))
    if not multirun and run_dir.parent.name == name:
        candidates += list(run_dir.parent.glob("*/checkpoints/last*.ckpt"))
    for path in sorted(set(candidates), key=lambda p: p.stat().st_mtime, reverse=True):
        if is_complete_checkpoint(path):
            return str(path)
        log.warning("resume: skipping %s, not a complete checkpoint (a write cut short?)", path)
    if resume == "auto":
        return None
    searched = run_dir.parent if not multirun and run_dir.parent.name == name else run_dir
    raise TrainingError(f"resume=true: no complete last.ckpt under {searched}")


@dataclass
class Job:
    """Where a run stands: its folder, the export it will write, and when it started."""

    run_dir: Path
    multirun: bool
    export_dir: Path
    export_name: str
    started: float = field(default_factory=time.time)


@dataclass
class Outcome:
    """What training produced: the weights chosen for export and how long fitting took."""

    val_bpc: float
    best_step: int
    train_seconds: float


def run(cfg: DictConfig) -> Path | None:
    """Train as ``cfg`` says and export the best model; returns the export folder (rank 0)."""
    check_settings(cfg)
    job = start_job(cfg)
    start = prepare_run(cfg)
    datamodule = build_datamodule(cfg, start)
    task = build_task(cfg, start)
    source_bpc = score_source(cfg, task, datamodule, start)
    trainer = build_trainer(cfg)
    train_seconds = fit(cfg, job, trainer, task, datamodule)
    outcome = choose_best(trainer, task, datamodule, train_seconds, cfg.export.weights)
    if not trainer.is_global_zero:
        return None
    warn_if_no_gain(cfg, source_bpc, outcome)
    metrics = run_metrics(cfg, job, trainer, task, start, outcome, source_bpc)
    return export_best(cfg, job, task, start, metrics, outcome)


def check_settings(cfg: DictConfig) -> None:
    """Settings that are wrong whatever the data: refused before anything is read or trained."""
    if cfg.export.weights not in EXPORT_WEIGHTS:
        raise TrainingError(f"export.weights={cfg.export.weights}: use one of {', '.join(EXPORT_WEIGHTS)}")
    if cfg.data.prompt_windows and not cfg.data.document_contexts:
        raise TrainingError("data.prompt_windows=true needs data.document_contexts=true: a prompt window's "
                            "context is [BOS] and the document's first line")
    weight = cfg.data.layout_loss_weight
    if weight < 0:
        raise TrainingError(f"data.layout_loss_weight={weight}: must be >= 0 (0 turns the layout loss off)")
    if weight > 0 and not cfg.data.layout_chars:
        raise TrainingError(f"data.layout_loss_weight={weight} needs data.layout_chars: the line break and "
                            "marks whose places it trains (e.g. songci's)")


def start_job(cfg: DictConfig) -> Job:
    """DDP housekeeping, the seed, the run folder, and an export name that spares shipped models."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import to_absolute_path

    from textgen.training.distributed import end_previous_job, quiet_other_ranks

    started = time.time()
    end_previous_job()
    quiet_other_ranks()
    hydra_cfg = HydraConfig.get()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    export_dir = Path(to_absolute_path(cfg.export.dir))
    export_name = unshipped_export_name(export_dir, cfg.export.name)
    if export_name != cfg.export.name:
        log.warning("%s is a shipped model, which training never replaces: this run will export as %s "
                    "(export.name=... picks a name)", export_dir / cfg.export.name, export_name)
    return Job(run_dir=Path(hydra_cfg.runtime.output_dir), multirun=hydra_cfg.mode == RunMode.MULTIRUN,
               export_dir=export_dir, export_name=export_name, started=started)


def document_separator(data: DictConfig) -> str | None:
    """The separator training contexts stop at (``data.document_contexts``), or None: they run on."""
    return data.document_separator if data.document_contexts else None


def line_break_id(tokenizer) -> int:
    """The line break's token: what layout positions count and prompt windows start after."""
    return tokenizer.encode("\n")[0]


def build_datamodule(cfg: DictConfig, start: RunStart):
    """Training and validation windows over the run's token ids; too little text is an error."""
    from textgen.training.datamodule import WindowDataModule

    data, corpus = cfg.data, start.corpus
    if len(corpus.train_ids) <= data.target_chars:
        raise TrainingError(
            f"corpus {corpus.name!r}: the train split has {len(corpus.train_ids)} tokens, fewer than one "
            f"window (data.target_chars={data.target_chars}); use a longer text or smaller windows"
        )
    datamodule = WindowDataModule(
        corpus.train_ids, corpus.val_ids, data.context_chars, data.target_chars, data.batch_size,
        val_batch_size=data.val_batch_size, stride=data.stride, num_workers=data.num_workers, seed=cfg.seed,
        document_separator=start.tokenizer.encode(separator) if (separator := document_separator(data)) else None,
        prompt_line_end=line_break_id(start.tokenizer) if data.prompt_windows else None,
    )
    prompts = len(datamodule.train_set.prompt_starts)
    if prompts:
        log.info("training windows: %s every %d tokens and %s under a document's first line (data.prompt_windows)",
                 f"{len(datamodule.train_set) - prompts:,}", data.stride, f"{prompts:,}")
    if len(datamodule.train_set) < data.batch_size:
        raise TrainingError(
            f"corpus {corpus.name!r}: the train split gives {len(datamodule.train_set)} training windows, "
            f"fewer than one batch (data.batch_size={data.batch_size}, data.stride={data.stride}); "
            "use a longer text, a smaller batch or stride"
        )
    return datamodule


def build_task(cfg: DictConfig, start: RunStart):
    """The model (with the fine-tuning source's weights, if any), its optimizer and schedule."""
    from hydra.utils import instantiate

    from textgen.training.module import LanguageModelTask

    model_values = OmegaConf.to_container(cfg.model, resolve=True)
    layout = model_values.get("line_positions") or model_values.get("column_positions")
    model_config = ModelConfig.from_dict({**model_values, "vocab_size": start.tokenizer.vocab_size,
                                          "newline_id": line_break_id(start.tokenizer) if layout else None})
    task = LanguageModelTask(
        model_config, start.tokenizer.chars_per_token,
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        layout_ids=layout_token_ids(cfg.data.layout_chars, start.tokenizer), layout_loss_weight=cfg.data.layout_loss_weight,
    )
    start.load_weights(task.model)
    log.info("model: %s, %s parameters", model_config, f"{task.model.num_params():,}")
    return task


def layout_token_ids(chars: str, tokenizer) -> list[int]:
    """The token of each of ``data.layout_chars``; a character the vocabulary lacks is an error."""
    pieces = {char: tokenizer.encode(char) for char in chars}
    missing = [char for char, ids in pieces.items() if len(ids) != 1]
    if missing:
        raise TrainingError(f"data.layout_chars: {missing!r} not in the tokenizer's vocabulary (byte pieces)")
    return [ids[0] for ids in pieces.values()]


def score_source(cfg: DictConfig, task, datamodule, start: RunStart) -> float | None:
    """With ``init_from``: the source export's bpc on the new val text, the bar fine-tuning must beat."""
    if not cfg.get("init_from"):
        return None
    source_bpc = validation_bpc(task.model, datamodule, start.tokenizer.chars_per_token)
    log.info("before fine-tuning, %s scores %.4f bpc on the new val text", cfg.init_from, source_bpc)
    return source_bpc


def build_trainer(cfg: DictConfig):
    """Lightning's ``Trainer`` with the configured callbacks and logger."""
    from hydra.utils import instantiate

    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger)


def fit(cfg: DictConfig, job: Job, trainer, task, datamodule) -> float:
    """``trainer.fit``, resumed if asked; a SIGTERM saves ``last.ckpt`` and says how to go on.

    Returns the seconds spent fitting.
    """
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from textgen.training.checkpointing import SaveLastOnStop, keep_csv_log_history
    from textgen.training.distributed import multirun_child_command

    ckpt_path = find_resume_checkpoint(cfg.resume, job.run_dir, job.multirun, cfg.name)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
        keep_csv_log_history(trainer.logger or False, ckpt_path, trainer.is_global_zero)
    fit_started = time.perf_counter()
    try:
        with multirun_child_command(trainer, ckpt_path):
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        saver = next((c for c in trainer.callbacks if isinstance(c, SaveLastOnStop)), None)
        saved = f"saved {saver.saved_path}" if saver and saver.saved_path else "no checkpoint saved"
        log.warning("SIGTERM at step %d of %s: %s; continue with resume=true",
                    trainer.global_step, trainer.max_steps, saved)
        raise
    if trainer.interrupted:
        log.warning("training was interrupted; its checkpoints are in %s", job.run_dir / "checkpoints")
    return time.perf_counter() - fit_started


def choose_best(trainer, task, datamodule, train_seconds: float, weights: str = "best") -> Outcome:
    """Load the best validated weights into ``task``: the best checkpoint, or the final weights
    (validated here when the run ended between validations) if they score better.  ``weights="last"``
    keeps the final weights whatever they score (``export.weights``)."""
    if task.last_val_step != trainer.global_step:  # ended between validations, or resumed after its end
        trainer.validate(task, datamodule=datamodule, verbose=False)
    final_score = float(trainer.callback_metrics["val_bpc"])
    if weights == "last":
        return Outcome(val_bpc=final_score, best_step=trainer.global_step, train_seconds=train_seconds)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    # A run resumed after its last step validates nothing: its restored best path has no score.
    best_score = math.inf
    if best_path and checkpoint.best_model_score is not None:
        best_score = float(checkpoint.best_model_score)
    else:
        best_path = ""
    best_step = trainer.global_step
    if final_score < best_score:  # the final weights, validated last, beat the best checkpoint's
        best_path, best_score = "", final_score
    if best_path:
        # Our own checkpoint from this run: Lightning's format needs the full unpickler.
        best = torch.load(best_path, map_location="cpu", weights_only=False)
        task.load_state_dict(best["state_dict"])
        best_step = int(best["global_step"])
    return Outcome(val_bpc=best_score, best_step=best_step, train_seconds=train_seconds)


def warn_if_no_gain(cfg: DictConfig, source_bpc: float | None, outcome: Outcome) -> None:
    """Fine-tuning that did not beat its source says so, with what to try."""
    if source_bpc is not None and outcome.val_bpc >= source_bpc:
        log.warning(
            "fine-tuning did not improve on %s: %.4f bpc on the new val text before, %.4f after (best of "
            "the validations). Try a lower optim.lr, fewer trainer.max_steps, or more frequent "
            "trainer.val_check_interval; the export keeps the best validated weights",
            cfg.init_from, source_bpc, outcome.val_bpc,
        )


def run_metrics(cfg: DictConfig, job: Job, trainer, task, start: RunStart, outcome: Outcome,
                source_bpc: float | None) -> dict[str, Any]:
    """The export's ``metrics.json``: scores, steps, speed, corpus, machine and command."""
    data, world = cfg.data, trainer.world_size
    chars_seen = trainer.global_step * data.batch_size * data.target_chars * world
    seconds = outcome.train_seconds
    return {
        "val_bpc": outcome.val_bpc,
        "val_loss": outcome.val_bpc * math.log(2),
        "best_step": outcome.best_step,
        "steps": trainer.global_step,
        "chars_seen": chars_seen,
        "train_seconds": round(seconds, 2),
        "wall_seconds": round(time.time() - job.started, 2),
        "train_chars_per_second": round(chars_seen / seconds, 1) if seconds else None,
        "params": task.model.num_params(),
        "vocab_size": start.tokenizer.vocab_size,
        "corpus": start.corpus.name,
        "corpus_origin": start.corpus.origin,
        "world_size": world,
        "machine": machine_description(),
        "command": "python -m textgen.train " + " ".join(sys.argv[1:]),
        **({"source_val_bpc": source_bpc} if source_bpc is not None else {}),
        "run_dir": str(job.run_dir),
        **start.metrics,
    }


def untrained_pieces(start: RunStart) -> list[int]:
    """Pieces no training text ever held (the sampler never writes them): absent from this run's
    text and, when fine-tuning, from the source's too."""
    untrained = set(absent_pieces(start.corpus.train_ids, start.tokenizer.vocab_size))
    if start.source is not None and start.source.info.untrained_pieces:
        untrained &= set(start.source.info.untrained_pieces)  # trained before or now
    elif start.source is not None:
        untrained = set()  # an export older than the field: nothing known, nothing masked
    return sorted(untrained)


def latex_files(cfg: DictConfig, start: RunStart) -> dict[str, str]:
    """For a LaTeX corpus (``data.preamble`` set): the preamble, the bibliography (``data.bibliography``)
    and the LaTeX vocabulary of the training text, checked with pdflatex when it is installed; {} for any other corpus."""
    from textgen.data.corpus import CorpusConfig, find_bibliography, find_preamble, load_corpus
    from textgen.data.latex_scan import build_checked
    from textgen.forms.bibliography import BIBLIOGRAPHY_FILE
    from textgen.latex_export import PREAMBLE_FILE, VOCABULARY_FILE

    config = CorpusConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))
    preamble_path = find_preamble(config)
    if preamble_path is None:
        return {}
    preamble = preamble_path.read_text(encoding="utf-8")
    vocab = build_checked(load_corpus(config).train, preamble, source={"corpus": start.corpus.name,
                                                                      "preamble": preamble_path.name})
    log.info("LaTeX vocabulary: %d commands, %d environments (%s)", len(vocab.commands), len(vocab.environments),
             "checked with pdflatex" if vocab.verified else "not checked: no pdflatex")
    files = {PREAMBLE_FILE: preamble, VOCABULARY_FILE: vocab.to_json()}
    bibliography = find_bibliography(config)
    if bibliography is not None:
        files[BIBLIOGRAPHY_FILE] = bibliography.read_text(encoding="utf-8")
    return files


def export_best(cfg: DictConfig, job: Job, task, start: RunStart, metrics: dict[str, Any],
                outcome: Outcome) -> Path:
    """Write the export folder and the run's ``result.json``; returns the export folder."""
    from hydra.core.hydra_config import HydraConfig

    from textgen.training.sweep import claim_export_name

    export_name = job.export_name
    if job.multirun:  # the jobs of a sweep claim names from the unshipped one, so they never collide
        hydra_cfg = HydraConfig.get()
        export_name = claim_export_name(hydra_cfg.sweep.dir, export_name, int(hydra_cfg.job.num))
    dest = job.export_dir / export_name
    export_model(
        dest, task.model, start.tokenizer, name=export_name, corpus=start.corpus.name,
        context_chars=cfg.data.context_chars, target_chars=cfg.data.target_chars,
        document_separator=document_separator(cfg.data),
        training_config=OmegaConf.to_yaml(cfg, resolve=True), metrics=metrics, dtype=cfg.export.dtype,
        untrained_pieces=untrained_pieces(start), extra_files=latex_files(cfg, start),
    )
    # The run's outcome beside its checkpoints, for sweep summaries (textgen.training.sweep).
    atomic_write_text(job.run_dir / "result.json", json.dumps({**metrics, "export": str(dest)}, indent=1) + "\n")
    log.info("exported %s (val bpc %.4f at step %d) to %s", export_name, outcome.val_bpc, outcome.best_step, dest)
    print(f"exported {dest}  val_bpc={outcome.val_bpc:.4f}  steps={metrics['steps']}", flush=True)
    return dest


HYDRA_OWN = (".hydra", "train.log")
"""What Hydra writes into a run folder before the run does anything."""


def discard_empty_run(run_dir: Path) -> None:
    """Remove the folder of a run that failed before writing anything of its own (no corpus, a bad
    option): only Hydra's files and empty folders in it.  ``outputs/<name>/`` and ``outputs/`` go too
    when that leaves them empty.  A run that wrote a checkpoint or a log is kept."""
    if not run_dir.is_dir():
        return
    own = [path for path in run_dir.rglob("*") if path.is_file()
           and path.relative_to(run_dir).parts[0] not in HYDRA_OWN]
    if own:
        return
    for handler in logging.getLogger().handlers[:]:  # Hydra's train.log handler holds the file open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in (run_dir.parent, run_dir.parent.parent):  # outputs/<name>/, then outputs/: only when empty
        with contextlib.suppress(OSError):
            folder.rmdir()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the val bpc (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        dest = run(cfg)
    except (TrainingError, ValueError, OSError) as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("%s", error)
            raise  # Hydra records the job as failed (a failed row of the sweep summary) and goes on
        discard_empty_run(Path(HydraConfig.get().runtime.output_dir))
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # the traceback, for whoever asked for it
        print(f"error: {error}", file=sys.stderr)  # an expected failure: one line, no traceback
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
