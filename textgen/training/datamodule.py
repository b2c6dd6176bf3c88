"""The LightningDataModule: token windows for training (shuffled) and validation (tiled)."""

from __future__ import annotations

import itertools

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from textgen.data.windows import DocumentStarts, RandomWindows, TiledWindows, train_order


class ShardSampler(DistributedSampler):
    """Rank ``r`` of ``w`` reads the ``r``-th contiguous ``1/w`` of a dataset, in order, once.

    Unlike :class:`DistributedSampler` it never pads a short shard by repeating samples, so sums
    over all ranks count every sample exactly once (validation sums nats and characters, then
    reduces them).  Shards differ in length by at most one sample.  It subclasses
    ``DistributedSampler`` so that Lightning keeps it instead of swapping in its own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        size = len(dataset)
        self.start, self.stop = size * rank // num_replicas, size * (rank + 1) // num_replicas
        self.num_samples = self.total_size = self.stop - self.start

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples


class RankShare(DistributedSampler):
    """Rank ``r`` of ``w`` takes elements ``r, r + w, r + 2w, ...`` of a seeded epoch order.

    For corpora too large for :class:`DistributedSampler`'s in-memory permutation: the order is a
    :class:`~textgen.data.windows.RandomOrder` (O(1) memory), the same on every rank, so the shares
    are disjoint; each has ``len // w`` indices (the remainder is dropped, never repeated).
    """

    def __init__(self, dataset: Dataset, order, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=True)
        self.order = order
        self.num_samples = len(order) // num_replicas
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.order.set_epoch(epoch)

    def __iter__(self):
        return itertools.islice(iter(self.order), self.rank, self.total_size, self.num_replicas)

    def __len__(self) -> int:
        return self.num_samples


class WindowDataModule(pl.LightningDataModule):
    """Serves (context, continuation) windows of already tokenized train and val streams.

    Training windows are shuffled; validation tiles the val text so that every character is
    scored once.  Under distributed training (``trainer.world_size > 1``) the module shards both
    itself: every rank draws the same seeded permutation of the training windows and takes its
    own disjoint slice of it (the few windows left over from an even split are dropped, never
    repeated), and each rank validates a contiguous shard of the val windows (:class:`ShardSampler`),
    so the summed val loss counts every character once, as a single process would.
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
        document_separator: list[int] | None = None,
        prompt_line_end: int | None = None,
    ) -> None:
        """``document_separator`` (token ids): contexts stop at a document's start
        (:class:`~textgen.data.windows.DocumentStarts`); None lets them run on across documents.
        ``prompt_line_end`` (the line break's token; needs the separator): training also gets one
        window per document that starts under its first line (``data.prompt_windows``)."""
        super().__init__()
        def starts(ids: Tensor) -> DocumentStarts | None:
            return DocumentStarts(ids, document_separator) if document_separator else None

        self.train_set = RandomWindows(train_ids, context_chars, target_chars, stride, documents=starts(train_ids),
                                       prompt_line_end=prompt_line_end)
        self.val_set = TiledWindows(val_ids, context_chars, target_chars, documents=starts(val_ids))
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _loader_options(self) -> dict:
        workers = self.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0,
                "pin_memory": torch.cuda.is_available()}

    def _rank_and_world(self) -> tuple[int, int]:
        """This process' global rank and the number of processes (0, 1 outside a distributed run)."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        if world > 1:
            # The same seed on every rank: one order per epoch (Lightning calls set_epoch), cut into
            # disjoint per-rank shares.
            order = train_order(self.train_set, self.seed)
            sampler = (DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True,
                                          seed=self.seed, drop_last=True) if order is None
                       else RankShare(self.train_set, order, world, rank))
            return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                              **self._loader_options())
        generator = torch.Generator().manual_seed(self.seed)
        order = train_order(self.train_set, self.seed)  # None: few enough windows for torch's shuffle
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=order is None, sampler=order,
                          drop_last=True, generator=generator, **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ShardSampler(self.val_set, world, rank) if world > 1 else None
        return DataLoader(self.val_set, batch_size=self.val_batch_size, shuffle=False, sampler=sampler,
                          **self._loader_options())
