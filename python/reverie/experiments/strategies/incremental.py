"""``incremental``: fine-tune on the new task only (the lower bound: fast, forgets)."""

from __future__ import annotations

from .base import Strategy


class Incremental(Strategy):
    """Train ``epochs`` passes over task ``t`` only."""

    name = "incremental"

    def train_task(self, task: int) -> None:
        self.optimizer = self.task_optimizer(task)
        self.fit(task, self.batches(self.ctx.train_indices[task], salt=task))
