"""The LightningModule: cross-entropy training, bits-per-character validation, optimisers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import Tensor
from torch.optim import Optimizer

from textgen.evaluation import score_batch
from textgen.models import ModelConfig, Seq2SeqLM

NO_DECAY_SUFFIXES = ("bias", "embedding.weight")


class LanguageModelTask(pl.LightningModule):
    """Trains a :class:`Seq2SeqLM`; logs ``train_loss``, ``val_loss`` (nats/char) and ``val_bpc``.

    ``optimizer`` and ``scheduler`` are partials from ``conf/optim`` and ``conf/scheduler``
    (``hydra.utils.instantiate`` with ``_partial_: true``): the optimizer takes the parameter
    groups, the scheduler the optimizer and a budget-progress function.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        chars_per_token: list[int],
        optimizer: Callable[..., Optimizer],
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        layout_ids: list[int] | None = None,
        layout_loss_weight: float = 0.0,
    ) -> None:
        """``layout_ids`` and ``layout_loss_weight``: train on the cross-entropy plus that many times
        the layout's (:meth:`Seq2SeqLM.layout_losses`); the weight 0 trains on the cross-entropy alone."""
        super().__init__()
        self.model = Seq2SeqLM(model_config)
        self.layout_loss_weight = layout_loss_weight if layout_ids else 0.0
        self.register_buffer("layout_ids", torch.tensor(layout_ids or [], dtype=torch.long), persistent=False)
        self.register_buffer("chars_per_token", torch.tensor(chars_per_token), persistent=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self._fit_started: float | None = None
        self._elapsed_before = 0.0  # wall time of earlier (resumed) attempts
        self._val_nll = self._val_chars = None
        #: The global step of the latest validation (None before the first).
        self.last_val_step: int | None = None

    # ----------------------------------------------------------------- steps
    def training_step(self, batch, batch_idx: int) -> Tensor:
        context, lengths, inputs, targets = batch
        if self.layout_loss_weight:
            loss, layout = self.model.layout_losses(context, inputs, targets, self.layout_ids, context_lengths=lengths)
            self.log("train_layout_loss", layout, on_step=True, on_epoch=False, sync_dist=True)
            total = loss + self.layout_loss_weight * layout
        else:
            _, loss = self.model(context, inputs, targets, context_lengths=lengths)
            total = loss
        # Averaged over ranks under DDP (one scalar all-reduce beside the gradients' own).
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True)
        return total

    def on_validation_epoch_start(self) -> None:
        self._val_nll = torch.zeros((), device=self.device, dtype=torch.float64)
        self._val_chars = torch.zeros((), device=self.device, dtype=torch.float64)

    def validation_step(self, batch, batch_idx: int) -> None:
        nll, chars = score_batch(self.model, batch, self.chars_per_token)
        self._val_nll += nll.double()
        self._val_chars += chars.double()

    def on_validation_epoch_end(self) -> None:
        # Each rank scored its own shard of the val windows (ShardSampler): the sums add up to the
        # whole val text, counted once.
        nll = self.trainer.strategy.reduce(self._val_nll, reduce_op="sum")
        chars = self.trainer.strategy.reduce(self._val_chars, reduce_op="sum")
        loss = (nll / chars.clamp(min=1)).float()
        # Already equal on every rank: sync_dist averages identical values (exactly) and tells
        # Lightning the metric is global.
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_bpc", loss / math.log(2), prog_bar=True, sync_dist=True)
        self.last_val_step = self.global_step

    # ----------------------------------------------------------------- budget
    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()

    def elapsed_seconds(self) -> float:
        """Training wall time, including earlier attempts of a resumed run."""
        now = time.monotonic() - self._fit_started if self._fit_started else 0.0
        return self._elapsed_before + now

    def budget_progress(self, step: int) -> float:
        """Share of the budget used: the larger of steps / max_steps and time / max_time."""
        shares = []
        trainer = self._trainer
        if trainer is not None and trainer.max_steps and trainer.max_steps > 0:
            shares.append(step / trainer.max_steps)
        max_time = None
        if trainer is not None:
            timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
            max_time = getattr(timer, "_duration", None)
        if max_time:
            shares.append(self.elapsed_seconds() / max_time)
        return max(shares, default=0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["textgen_elapsed_seconds"] = self.elapsed_seconds()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._elapsed_before = float(checkpoint.get("textgen_elapsed_seconds", 0.0))

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(param)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        if _is_plateau(self.scheduler_factory):
            scheduler = self.scheduler_factory(optimizer)
            val_every = self.trainer.val_check_interval if isinstance(self.trainer.val_check_interval, int) else 1
            config = {"scheduler": scheduler, "monitor": "val_loss", "interval": "step",
                      "frequency": max(int(val_every), 1), "strict": False}
        else:
            scheduler = self.scheduler_factory(optimizer, progress=self.budget_progress)
            config = {"scheduler": scheduler, "interval": self.scheduler_interval}
        return {"optimizer": optimizer, "lr_scheduler": config}


def _is_plateau(factory: Callable) -> bool:
    target = getattr(factory, "func", factory)
    return isinstance(target, type) and issubclass(target, torch.optim.lr_scheduler.ReduceLROnPlateau)
