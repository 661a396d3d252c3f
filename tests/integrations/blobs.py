"""A small class-incremental benchmark built from tensors, and Avalanche training on it.

Ten classes of Gaussian blobs in 32 dimensions (centres 2 apart on average), five
experiences of two classes, through Avalanche's own tensor benchmark generator
(``nc_benchmark`` over ``TensorDataset``s). Trained alone on the last experience, a model
answers mostly its two classes: accuracy on the first eight classes falls below 10%.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

import reverie.integrations.avalanche  # noqa: F401  (first: makes `import avalanche` work, see torchvision_ops)

# isort: split
from avalanche.benchmarks import nc_benchmark
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin

from reverie.integrations.avalanche import ReveriePlugin

TASKS, CLASSES, DIM = 5, 10, 32
TRAIN_PER_CLASS, TEST_PER_CLASS = 200, 100
OLD_CLASSES = list(range(CLASSES - CLASSES // TASKS))  # the classes of every experience but the last


def make_benchmark() -> tuple[Any, torch.Tensor, torch.Tensor]:
    """(benchmark, x_test [n, DIM], y_test [n]); the same data on every rank and run."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(CLASSES, DIM, generator=g) * 1.5
    y = torch.arange(CLASSES).repeat_interleave(TRAIN_PER_CLASS)
    x = centers[y] + torch.randn(len(y), DIM, generator=g)
    y_test = torch.arange(CLASSES).repeat_interleave(TEST_PER_CLASS)
    x_test = centers[y_test] + torch.randn(len(y_test), DIM, generator=g)
    benchmark = nc_benchmark(
        TensorDataset(x, y),
        TensorDataset(x_test, y_test),
        n_experiences=TASKS,
        task_labels=False,
        fixed_class_order=list(range(CLASSES)),
    )
    return benchmark, x_test, y_test


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, CLASSES))


def make_strategy(model: nn.Module, plugins: list[Any], batch: int = 16, epochs: int = 2) -> Naive:
    """Naive (plain fine-tuning) with the given plugins; SGD lr 0.05 momentum 0.9; no logging."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Naive(
        model=model,
        optimizer=opt,
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=batch,
        train_epochs=epochs,
        eval_mb_size=256,
        plugins=plugins,
        evaluator=EvaluationPlugin(loggers=[]),
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> float:
    """Top-1 accuracy (%) of ``model`` on the test rows of ``classes``."""
    keep = torch.isin(y, torch.tensor(classes))
    module = getattr(model, "module", model)  # DDP-wrapped or not
    return 100.0 * float((module(x[keep]).argmax(1) == y[keep]).float().mean())


class RecordingPlugin(ReveriePlugin):
    """ReveriePlugin that records, per experience, how many rows each draw took from each
    owner rank (``owners[experience] = [[rows from rank 0, rows from rank 1, ...], ...]``), and
    the buffer as it opened (restored from a checkpoint or new). Defined here, not in a
    script: dill pickles a class of ``__main__`` by value and loses its bases."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owners: dict[int, list[list[int]]] = {}  # experience -> per draw, rows per owner
        self.opened: dict[str, Any] = {}

    def _open(self, strategy: Any, x: Any, t: Any) -> None:
        super()._open(strategy, x, t)
        self.opened = contents(self.buffer)

    def _append(self, strategy: Any, draw: Any) -> None:
        world = self.buffer.world_size
        per_owner = torch.bincount(draw.ranks.long(), minlength=world).tolist()
        self.owners.setdefault(strategy.clock.train_exp_counter, []).append(per_owner)
        super()._append(strategy, draw)


def contents(buffer: Any) -> dict[str, Any]:
    """Size, staged rows and per-class counts of this rank's buffer."""
    return {"size": len(buffer), "staged": buffer.staged, "classes": sorted(buffer.class_counts().items())}
