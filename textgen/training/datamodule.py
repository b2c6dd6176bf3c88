"""The LightningDataModule: token windows for training (shuffled) and validation (tiled)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from textgen.data.windows import RandomWindows, TiledWindows, train_order


class WindowDataModule(pl.LightningDataModule):
    """Serves (context, continuation) windows of already tokenized train and val streams.

    Training windows are shuffled by the sampler (Lightning swaps in a ``DistributedSampler``
    under DDP, so ranks see disjoint windows); validation tiles the val text so that every
    character is scored once.
    """

    def __init__(
        self,
        train_ids: Tensor,
        val_ids: Tensor,
        context_chars: int,
        target_chars: int,
        batch_size: int,
        val_batch_size: int | None = None,
        stride: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_set = RandomWindows(train_ids, context_chars, target_chars, stride)
        self.val_set = TiledWindows(val_ids, context_chars, target_chars)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _loader_options(self) -> dict:
        workers = self.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0,
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        order = train_order(self.train_set, self.seed)  # None: few enough windows for torch's shuffle
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=order is None, sampler=order,
                          drop_last=True, generator=generator, **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.val_batch_size, shuffle=False, **self._loader_options())
