"""Accuracy after each task, and the continual-learning metrics derived from it.

The accuracy matrix ``A`` has shape ``[T, T]``: ``A[i, j]`` is the accuracy (fraction in
[0, 1]) on the test split of task ``j`` after training task ``i``; entries with ``j > i``
are not evaluated and hold NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .batches import index_batches


@torch.no_grad()
def topk_correct(
    model: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    indices: np.ndarray,
    device: torch.device,
    batch_size: int = 512,
    ks: Sequence[int] = (1, 5),
) -> tuple[list[int], int]:
    """Count top-k hits of ``model`` on ``dataset[indices]``.

    Returns:
        ``([hits for each k], number of samples)``.
    """
    model.eval()
    hits = [0] * len(ks)
    for x, y in index_batches(dataset, indices, batch_size):
        logits = model(x.to(device))
        top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices.cpu()
        for i, k in enumerate(ks):
            hits[i] += int((top[:, :k] == y[:, None]).any(dim=1).sum())
    model.train()
    return hits, len(indices)


def evaluate_tasks(
    model: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    task_test_shards: Sequence[np.ndarray],
    device: torch.device,
    batch_size: int = 512,
) -> tuple[list[float], list[float]]:
    """Top-1 and top-5 accuracy on each task's test split, evaluated data-parallel.

    Each rank passes its shard of every task's test indices; hit counts are summed over ranks
    (all-reduce) so every rank returns the accuracy on the full test split of each task.

    Returns:
        ``(top1 per task, top5 per task)``, fractions in [0, 1].
    """
    counts = torch.zeros((len(task_test_shards), 3), dtype=torch.float64)
    for t, idx in enumerate(task_test_shards):
        (h1, h5), n = topk_correct(model, dataset, idx, device, batch_size)
        counts[t] = torch.tensor([h1, h5, n], dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(counts)
    n = counts[:, 2].clamp(min=1)
    return (counts[:, 0] / n).tolist(), (counts[:, 1] / n).tolist()


def new_matrix(tasks: int) -> np.ndarray:
    """A ``[tasks, tasks]`` float64 accuracy matrix full of NaN."""
    return np.full((tasks, tasks), np.nan)


def mean_accuracy_after_each_task(matrix: np.ndarray) -> list[float]:
    """Mean over seen tasks ``j <= i`` of ``A[i, j]``, for each row ``i`` that was evaluated."""
    out = []
    for i in range(matrix.shape[0]):
        row = matrix[i, : i + 1]
        if np.isnan(row).all():
            break
        out.append(float(np.nanmean(row)))
    return out


def forgetting(matrix: np.ndarray, after: int | None = None) -> float:
    """Average forgetting (Chaudhry et al. 2018) after task ``after`` (default: the last).

    For every earlier task ``j < after``: ``max_{j <= l < after} A[l, j] - A[after, j]``,
    averaged over ``j``. 0.0 when only one task has been seen.
    """
    last = matrix.shape[0] - 1 if after is None else after
    if last <= 0:
        return 0.0
    drops = [np.nanmax(matrix[j:last, j]) - matrix[last, j] for j in range(last)]
    return float(np.mean(drops))


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean of ``A[T-1, j] - A[j, j]`` over ``j < T-1``."""
    last = matrix.shape[0] - 1
    if last <= 0:
        return 0.0
    return float(np.mean([matrix[last, j] - matrix[j, j] for j in range(last)]))
