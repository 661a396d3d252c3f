"""Minibatch iterables over a subset of a dataset, reshuffled deterministically per pass.

In-memory tensor datasets are sliced directly (no per-sample ``__getitem__``, no collate);
other datasets (image folders) go through a ``torch.utils.data.DataLoader``. Both yield
``(x [b, *input_shape] float32, y [b] int64)`` on the CPU, which is what
``reverie.RehearsalLoader`` wraps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset


class ShardBatches:
    """Re-iterable minibatches: this rank's part of each global batch over ``dataset[indices]``.

    Pass ``k`` (0, 1, 2, ...) is shuffled with ``(seed, k)`` when ``shuffle`` is set, so a run
    is reproducible; a pass takes whole global batches only (the rows of a short last batch
    are left out of that pass), so every rank gets as many rows as the others.

    Args:
        dataset: map-style dataset of ``(x, y)``.
        indices: int64 indices into ``dataset`` (the same on every rank).
        batch_size: samples per global batch ``b``, a multiple of ``world_size``.
        shuffle: reshuffle every pass.
        seed: base seed of the shuffles (the same on every rank).
        workers: DataLoader worker processes for datasets that are not in memory.
        rank: this rank, ``0 .. world_size - 1``.
        world_size: number of data-parallel ranks.
        whole_batches: leave out a short last batch (training); False keeps every row (one
            rank only: evaluation).
    """

    def __init__(
        self,
        dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        whole_batches: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: must be in 0..{world_size - 1}, got {rank}")
        if batch_size % world_size:
            raise ValueError(f"batch_size: must be a multiple of the {world_size} ranks, got {batch_size}")
        if not whole_batches and world_size > 1:
            raise ValueError("whole_batches: False needs world_size 1 (ranks must take equal parts)")
        self.rank, self.world_size, self.whole_batches = rank, world_size, whole_batches
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.workers = workers
        self.passes = 0

    def _usable(self) -> int:
        """Rows used per pass: whole global batches only, whatever the rank count, so every
        rank count takes the same steps (a short last batch of 13 rows cannot be split over 2
        ranks); the next pass reshuffles, so the rows left out differ from pass to pass.
        Fewer rows than one batch are all used (cut to a multiple of the ranks)."""
        n = len(self.indices)
        if not self.whole_batches:
            return n
        if n < self.batch_size:
            return n - n % self.world_size
        return n - n % self.batch_size

    def __len__(self) -> int:
        return (self._usable() + self.batch_size - 1) // self.batch_size

    def _order(self) -> np.ndarray:
        """This rank's rows of the pass, global batch after global batch."""
        order = self.indices
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.passes, 0xBA7C])
            order = order[rng.permutation(len(order))]
        order = order[: self._usable()]
        if self.world_size == 1:
            return order
        parts = []
        for i in range(0, len(order), self.batch_size):
            chunk = order[i : i + self.batch_size]
            per = len(chunk) // self.world_size
            parts.append(chunk[self.rank * per : (self.rank + 1) * per])
        return np.concatenate(parts) if parts else order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        self.passes += 1
        step = self.batch_size // self.world_size
        if isinstance(self.dataset, TensorDataset):
            x_all, y_all = self.dataset.tensors
            for i in range(0, len(order), step):
                idx = torch.from_numpy(order[i : i + step])
                yield x_all[idx], y_all[idx]
            return
        loader = DataLoader(
            Subset(self.dataset, order.tolist()),
            batch_size=step,
            shuffle=False,
            num_workers=self.workers,
        )
        for x, y in loader:
            yield x, y.to(torch.int64)


def index_batches(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]], indices: np.ndarray, batch_size: int
) -> ShardBatches:
    """Unshuffled batches over ``dataset[indices]`` (for evaluation)."""
    return ShardBatches(dataset, indices, batch_size, shuffle=False, whole_batches=False)
