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
    """Re-iterable minibatches over ``dataset[indices]``.

    Pass ``k`` (0, 1, 2, ...) is shuffled with ``(seed, k)`` when ``shuffle`` is set, so a run
    is reproducible; the last batch may be smaller than ``batch_size``.

    Args:
        dataset: map-style dataset of ``(x, y)``.
        indices: int64 indices into ``dataset``.
        batch_size: samples per batch ``b``.
        shuffle: reshuffle every pass.
        seed: base seed of the shuffles.
        workers: DataLoader worker processes for datasets that are not in memory.
    """

    def __init__(
        self,
        dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        workers: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.workers = workers
        self.passes = 0

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        rng = np.random.default_rng([self.seed, self.passes, 0xBA7C])
        return self.indices[rng.permutation(len(self.indices))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        self.passes += 1
        if isinstance(self.dataset, TensorDataset):
            x_all, y_all = self.dataset.tensors
            for i in range(0, len(order), self.batch_size):
                idx = torch.from_numpy(order[i : i + self.batch_size])
                yield x_all[idx], y_all[idx]
            return
        loader = DataLoader(
            Subset(self.dataset, order.tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
        )
        for x, y in loader:
            yield x, y.to(torch.int64)


def index_batches(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]], indices: np.ndarray, batch_size: int
) -> ShardBatches:
    """Unshuffled batches over ``dataset[indices]`` (for evaluation)."""
    return ShardBatches(dataset, indices, batch_size, shuffle=False)
