"""Batches for training and evaluation, from cached or streamed decoded images.

Cached splits are batched by indexing the memory-mapped uint8 tensor directly (no
per-image Python, no worker processes); streamed splits and per-image transforms go
through a DataLoader with persistent workers. Either way the batch arrives on the device
as uint8 and is augmented (training) or centre-cropped and normalised (evaluation) there.
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from .augment import BatchAugment, eval_batch
from .cache import CachedImages


def default_workers() -> int:
    """Loader processes per training process: the CPUs it may use, at most 8."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, (os.cpu_count() or 1) // local))


def base_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """(underlying dataset, the indices `dataset` selects of it), through nested Subsets."""
    if isinstance(dataset, Subset):
        base, indices = base_and_indices(dataset.dataset)
        return base, [indices[i] for i in dataset.indices]
    return dataset, list(range(len(dataset)))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's, Python's and NumPy's global RNGs seeded for the block (timm's RandAugment draws from the last
    two), their states restored after."""
    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


class _SeededItems(Dataset):
    """Items keyed by (index, seed): the per-image transform runs under its own seed."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        x, y = self.base[index]
        if self.transform is None:
            return x, y
        with seeded(seed):
            return self.transform(x), y


class _EpochBatches:
    """The batch sampler of a persistent DataLoader: the batches of the current epoch, set before iterating."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TrainLoader:
    """The training batches of each epoch on `device`: a shuffled order fixed by (seed, epoch), sharded
    over ranks, and augmentation seeded by (seed, rank, step). `epoch(e, start)` resumes at any step.

    With `repeats` > 1, DeiT's repeated augmentation: each image of the shuffled order `repeats` times in a row,
    consecutive copies on consecutive ranks, the epoch as long as without repeats (DeiT's `RASampler`); every
    copy is augmented with its own draws."""

    def __init__(self, dataset: Dataset, batch_size: int, augment: BatchAugment, device: torch.device,
                 seed: int = 0, rank: int = 0, world: int = 1, per_image: Callable | None = None,
                 workers: int = 0, repeats: int = 1) -> None:
        self.base, self.indices = base_and_indices(dataset)
        self.batch_size, self.augment, self.device = batch_size, augment, device
        self.seed, self.rank, self.world, self.repeats = seed, rank, world, repeats
        self.steps = len(self.indices) // (batch_size * world)
        self.direct = isinstance(self.base, CachedImages) and per_image is None
        self.sampler = _EpochBatches()
        self.loader = None if self.direct else DataLoader(
            _SeededItems(self.base, per_image), batch_sampler=self.sampler, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        return self.steps

    def order(self, epoch: int) -> Tensor:
        """This rank's dataset indices for `epoch`, steps x batch_size of them."""
        perm = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(self.seed + epoch))
        perm = perm.repeat_interleave(self.repeats)
        used = perm[: self.steps * self.batch_size * self.world][self.rank::self.world]
        return torch.as_tensor(self.indices)[used]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Augmented (x, y) batches of `epoch` from step `start` on."""
        order = self.order(epoch).view(self.steps, self.batch_size)[start:]
        if self.direct:
            raw: Iterator = ((self.base.images.index_select(0, idx), self.base.labels.index_select(0, idx))
                             for idx in order)
        else:
            places = torch.arange(start * self.batch_size, self.steps * self.batch_size).view_as(order)
            seeds = (self.seed * 100_003 + epoch) * 1_000_003 + places * self.world + self.rank  # one per copy
            self.sampler.batches = [list(zip(idx.tolist(), s.tolist())) for idx, s in zip(order, seeds)]
            raw = iter(self.loader)
        first = epoch * self.steps + start
        for step, (x, y) in enumerate(raw, first):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            yield self.augment(x, y, step * self.world + self.rank)


class EvalBatches:
    """Evaluation batches (centre crop, normalised) of a decoded dataset, re-iterable and picklable.

    With `keep=True` the uint8 batches are held in memory (the search's fixed fitness images).
    """

    def __init__(self, dataset: Dataset, image_size: int, batch_size: int = 128, device: str | torch.device = "cpu",
                 workers: int = 0, keep: bool = False) -> None:
        self.image_size, self.device = image_size, torch.device(device)
        base, indices = base_and_indices(dataset)
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.stored: list[tuple[Tensor, Tensor]] | None = None
        if keep:
            self.stored = [b for b in self._raw(base, indices)]

    def _raw(self, base: Dataset, indices: Sequence[int]) -> Iterator[tuple[Tensor, Tensor]]:
        if isinstance(base, CachedImages):  # decoded tensors: whole batches at once
            for i in range(0, len(indices), self.batch_size):
                idx = torch.as_tensor(indices[i:i + self.batch_size])
                yield base.images.index_select(0, idx), base.labels.index_select(0, idx)
        else:
            yield from DataLoader(Subset(base, list(indices)), batch_size=self.batch_size, num_workers=self.workers)

    def to(self, device: str | torch.device) -> "EvalBatches":
        self.device = torch.device(device)
        return self

    def __len__(self) -> int:
        return len(self.stored) if self.stored is not None else -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        raw = self.stored if self.stored is not None else self._raw(*base_and_indices(self.dataset))
        for x, y in raw:
            yield eval_batch(x.to(self.device, non_blocking=True), self.image_size), y.to(self.device)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.stored is not None:
            state["dataset"] = None  # the kept batches are all it needs
        return state
