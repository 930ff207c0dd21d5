"""Deterministic, resumable, rank-aware data order.

The trainer rebuilds every map-style DataLoader it is given around ``ResumableSampler``: epoch ``e``'s
order is ``randperm(n)`` from a generator seeded with ``seed + e`` (or ``arange(n)`` without shuffling),
padded like ``DistributedSampler`` to a multiple of the world size and dealt out round-robin, so

- the order depends only on (seed, epoch, world size), never on the global RNG;
- ``start_batch`` skips the batches already consumed in the epoch without loading them (mid-epoch resume);
- ``overfit`` repeats the first ``overfit`` samples (``overfit_batches``).

The loader's own ``generator`` (which draws worker base seeds) is re-seeded per epoch as well, so
``num_workers > 0`` is deterministic too; bit-exact mid-epoch resume additionally needs the dataset's
randomness to come from the main process (``num_workers=0``) or from the sample index.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, Sampler, SequentialSampler


class ResumableSampler(Sampler[int]):
    def __init__(
        self,
        length: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        drop_last: bool = False,
        overfit: int = 0,
    ):
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batch_size = max(1, batch_size)
        self.drop_last = drop_last
        self.overfit = overfit
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def _global_order(self) -> list[int]:
        if self.overfit:
            return list(range(min(self.overfit, self.length)))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return torch.randperm(self.length, generator=generator).tolist()
        return list(range(self.length))

    def _rank_order(self) -> list[int]:
        order = self._global_order()
        per_rank = math.ceil(len(order) / self.world_size)
        total = per_rank * self.world_size
        if total > len(order) and order:
            order = order + (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        order = self._rank_order()
        return iter(order[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(0, len(self._rank_order()) - self.start_batch * self.batch_size)

    def batches_per_epoch(self) -> int:
        n = len(self._rank_order())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def _loader_kwargs(loader: DataLoader) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return kwargs


class PreparedLoader:
    """A DataLoader the trainer controls: epoch-seeded order, resumable position, rank sharding.

    Loaders the trainer cannot re-sample (iterable datasets, custom batch samplers) are used as given;
    their position is restored by skipping batches, and in a multi-process run they must already
    shard by rank themselves.
    """

    def __init__(
        self,
        loader: DataLoader,
        *,
        shuffle: bool | None,
        seed: int,
        rank: int,
        world_size: int,
        overfit: int = 0,
        force_shuffle_off: bool = False,
    ):
        self.original = loader
        self.sampler: ResumableSampler | None = None
        self.generator = torch.Generator()
        self.seed = seed
        reshapable = not isinstance(loader.dataset, IterableDataset) and loader.batch_size is not None
        if reshapable and not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
            reshapable = False  # a custom sampler: its order is the user's
        if reshapable:
            if shuffle is None:
                shuffle = isinstance(loader.sampler, RandomSampler)
            if force_shuffle_off:
                shuffle = False
            self.sampler = ResumableSampler(
                len(loader.dataset),  # type: ignore[arg-type]
                shuffle=bool(shuffle),
                seed=seed,
                rank=rank,
                world_size=world_size,
                batch_size=int(loader.batch_size or 1),
                drop_last=loader.drop_last,
                overfit=overfit,
            )
            self.loader = DataLoader(
                loader.dataset, sampler=self.sampler, generator=self.generator, **_loader_kwargs(loader)
            )
        else:
            self.loader = loader
        self._skip = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch, start_batch)
            self._skip = 0
        else:
            for obj in (getattr(self.loader, "sampler", None), getattr(self.loader, "batch_sampler", None)):
                if obj is not None and hasattr(obj, "set_epoch"):
                    obj.set_epoch(epoch)
            self._skip = start_batch

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        for _ in range(self._skip):
            next(iterator, None)
        return iterator

    def __len__(self) -> int:
        """Batches in the current epoch (from the current start position)."""
        if self.sampler is not None:
            return self.sampler.batches_per_epoch() - self.sampler.start_batch
        return len(self.loader) - self._skip

    def batches_per_epoch(self) -> int | None:
        if self.sampler is not None:
            return self.sampler.batches_per_epoch()
        try:
            return len(self.loader)
        except TypeError:
            return None


__all__ = ["PreparedLoader", "ResumableSampler"]
