"""Crash-safe checkpoints: atomic writes, a save on SIGTERM, and a resume that skips broken files.

* :class:`AtomicCheckpointIO` writes every Lightning checkpoint to a temporary file beside its
  destination, fsyncs it and renames it into place: a process killed at any moment (SIGKILL
  included) leaves the previous complete ``last.ckpt`` or the new one, never half of one.
  (Lightning's own writer stages the file in the system temporary folder and *moves* it, which
  is a copy, not a rename, when that folder is on another file system.)
* :class:`SaveLastOnStop` saves ``last.ckpt`` when Lightning stops a run on SIGTERM (a cluster
  pre-empting the job), so ``resume=true`` continues from the step it had reached, and when
  training ends between two validations.
* :func:`is_complete_checkpoint` tells a complete checkpoint file from a truncated one.
* :func:`keep_csv_log_history` keeps the CSV log's curve up to the checkpoint when a run resumes in
  the folder it started in.
"""

from __future__ import annotations

import csv
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from textgen.atomic import atomic_file

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (temporary file, fsync, ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            # Remote storage: Lightning's own transactional writer.
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            # Left by a process killed while writing; only rank 0 writes checkpoints.
            stale.unlink(missing_ok=True)
        with atomic_file(path) as handle:
            torch.save(checkpoint, handle)


class SaveLastOnStop(Callback):
    """Save ``last.ckpt`` when a run stops between two validations (which write it otherwise).

    * On SIGTERM: Lightning turns the signal into a ``SIGTERMException`` at the end of the current
      training step (on every rank under DDP); ``on_exception`` runs before the trainer is torn
      down, so optimizer, schedule, loops and callbacks are saved as in any ``last.ckpt``.
    * At the end of training (``max_steps`` or ``max_time`` reached off a validation step), so
      that ``last.ckpt`` holds the final step and resuming a finished run trains nothing again.

    A SIGTERM that lands right after a validation finds ``last.ckpt`` already written at this step
    by the validation's ``ModelCheckpoint``, and keeps it.  Saving again would record the step as
    already counted for the loggers (Lightning counts it after the validation), and Lightning, which
    expects a checkpoint taken at a validated step to predate that count, would count it twice on
    resume: every row logged after it one step too high.
    """

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        #: Where the checkpoint went and at which step, once saved.
        self.saved_path: str | None = None
        self.saved_step: int | None = None

    def _path(self, trainer) -> str:
        checkpoint = trainer.checkpoint_callback
        folder = getattr(checkpoint, "dirpath", None) or str(Path(trainer.default_root_dir) / "checkpoints")
        return str(Path(folder) / self.filename)

    def _save(self, trainer) -> None:
        path = self._path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        self.saved_path, self.saved_step = path, trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != getattr(pl_module, "last_val_step", None) and not trainer.sanity_checking:
            self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        path = self._path(trainer)
        validated_here = trainer.global_step == getattr(pl_module, "last_val_step", None)
        # Rank 0 decides (it wrote the file); every rank then saves, or not, together.
        kept = trainer.strategy.broadcast(validated_here and checkpoint_step(path) == trainer.global_step)
        if kept:
            self.saved_path, self.saved_step = path, trainer.global_step
            log.info("SIGTERM: %s holds step %d, saved by its validation", path, trainer.global_step)
        else:
            self._save(trainer)
            log.info("SIGTERM: saved %s at step %d", self.saved_path, trainer.global_step)


def is_complete_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive with its directory and pickle).

    A file cut short by a crash mid-write lacks the zip's central directory, which comes last.
    Reading the directory is cheap: nothing is unpickled or loaded.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoint_step(path: str | Path) -> int | None:
    """The ``global_step`` stored in a complete checkpoint file, or None if there is none."""
    if not is_complete_checkpoint(path):
        return None
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["global_step"])


def keep_csv_log_history(logger: Any, ckpt_path: str | None, is_global_zero: bool) -> int:
    """Keep a CSV log's rows from before the checkpoint when a run resumes in its own folder.

    Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it opens its folder, so a run
    resumed where it started (``resume=auto`` in a requeued job, a fixed ``hydra.run.dir``) would
    lose its curve up to the checkpoint.  The rows logged before the checkpoint's step are written
    back; later ones are dropped, since those steps are trained again.  Returns the rows kept.
    """
    from pytorch_lightning.loggers import CSVLogger

    if not ckpt_path or not is_global_zero or not isinstance(logger, CSVLogger):
        return 0
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return 0
    step = checkpoint_step(ckpt_path)
    if step is None:
        return 0
    with open(path, newline="", encoding="utf-8") as file:
        rows = [{key: _csv_number(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(file)]
    kept = [row for row in rows if row.get("step", step) < step]  # logged at global_step - 1
    writer = logger.experiment  # opening the writer deletes the old file
    writer.metrics = kept
    writer.save()
    log.info("resume: kept %d of %d rows of %s (steps before %d)", len(kept), len(rows), path, step)
    return len(kept)


def _csv_number(value: str) -> int | float:
    return int(value) if value.lstrip("-").isdigit() else float(value)
