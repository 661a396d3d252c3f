"""The strategy interface: how a model is trained on task ``t`` of a scenario.

A strategy owns the DDP-wrapped model (and, for replay strategies, a rehearsal buffer).
``run.py`` calls :meth:`Strategy.train_task` for ``t = 0 .. T-1`` and evaluates
:attr:`Strategy.eval_model` after each call; everything else is the strategy's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..batches import ShardBatches
from ..config import ExperimentConfig
from ..datasets import DatasetSplits
from ..models import build_model
from ..process_group import ProcessGroup
from ..scenarios import Task


@dataclass
class TrainingContext:
    """What every strategy needs to know about the run.

    Attributes:
        config: the experiment options.
        group: this rank's place in the job.
        data: the dataset.
        tasks: the scenario's tasks (global indices).
        train_indices: every task's train indices, the same on every rank: :meth:`Strategy.batches`
            gives each rank its part of every global batch.
        progress: factory of progress iterables, ``progress(iterable, desc, total)``; silent
            on ranks other than 0.
    """

    config: ExperimentConfig
    group: ProcessGroup
    data: DatasetSplits
    tasks: list[Task]
    train_indices: list[np.ndarray]
    progress: Any

    def per_rank(self, total: int) -> int:
        """This rank's share of a job-wide size (batch, representatives, candidates, buffer)."""
        return total // self.group.world_size


class Strategy(ABC):
    """Base class: DDP model, optimizer, batching and the plain supervised step."""

    name: ClassVar[str]

    def __init__(self, ctx: TrainingContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.device = ctx.group.device
        self.model = self.fresh_model()
        self.optimizer = self.make_optimizer()

    # --- model and optimizer -------------------------------------------------------------
    def fresh_model(self) -> DistributedDataParallel:
        """A freshly initialized model (same weights for the same seed), wrapped in DDP."""
        torch.manual_seed(self.cfg.seed)
        model = build_model(
            self.cfg.model, self.ctx.data.input_shape, self.ctx.data.num_classes, self.cfg.dataset
        ).to(self.device)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def task_optimizer(self, task: int) -> torch.optim.Optimizer:
        """The optimizer for task ``task``: a new one (fresh momentum) at every task, or, with
        ``reset_optimizer`` off, the one of the previous task with its state (Avalanche >= 0.5)."""
        if self.cfg.reset_optimizer or task == 0:
            return self.make_optimizer()
        return self.optimizer

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam or SGD over the model's parameters, with ``lr`` and ``weight_decay``."""
        params = self.model.parameters()
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay
            )
        return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    @property
    def eval_model(self) -> nn.Module:
        """The unwrapped model, for evaluation without DDP synchronization."""
        return self.model.module

    # --- data ----------------------------------------------------------------------------
    def batches(self, indices: np.ndarray, salt: int) -> ShardBatches:
        """This rank's part of every global minibatch over train ``indices``, reshuffled per
        pass (seeded by ``salt``; the same order on every rank, so any rank count takes the
        1-rank run's steps)."""
        seed = int(np.random.default_rng([self.cfg.seed, salt]).integers(2**31))
        return ShardBatches(
            self.ctx.data.train,
            indices,
            self.cfg.batch_size,
            shuffle=True,
            seed=seed,
            workers=self.cfg.workers,
            rank=self.ctx.group.rank,
            world_size=self.ctx.group.world_size,
        )

    def epochs(self, task: int) -> Iterator[int]:
        """``range(epochs)`` with a progress bar on rank 0."""
        return iter(
            self.ctx.progress(range(self.cfg.epochs), desc=f"{self.name} task {task}", total=self.cfg.epochs)
        )

    # --- steps ---------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> float:
        """One SGD step on ``(x [n, ...], y [n])``; optional sample weights ``w [n]``.

        The loss is the (weighted) mean cross-entropy; DDP averages gradients across ranks,
        which equal-sized rank parts of a global batch turn into the global batch's gradient.
        Returns the loss value.
        """
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        out = self.model(x)
        if w is None:
            loss = F.cross_entropy(out, y)
        else:
            loss = (F.cross_entropy(out, y, reduction="none") * w.to(self.device)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip_and_step()
        return float(loss.detach())

    def clip_and_step(self) -> None:
        """Clip the (already all-reduced) gradient norm to ``clip_grad`` (0: off), then step."""
        if self.cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.optimizer.step()

    def fit(self, task: int, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Plain supervised training: ``epochs`` passes over ``loader``."""
        for _ in self.epochs(task):
            for x, y in loader:
                self.step(x, y)

    @abstractmethod
    def train_task(self, task: int) -> None:
        """Train on task ``task`` (tasks arrive in order 0, 1, ...)."""

    def buffer_info(self) -> dict[str, Any]:
        """Rehearsal-buffer facts for the report (empty for strategies without a buffer)."""
        return {}

    def close(self) -> None:
        """Release resources (buffers); the strategy is unusable afterwards."""
        return None
