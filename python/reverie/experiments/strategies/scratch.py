"""``scratch``: after each task, reset the model and retrain on all tasks so far (the upper
bound on accuracy; its cost grows with every task)."""

from __future__ import annotations

import numpy as np

from .base import Strategy


class Scratch(Strategy):
    """Re-initialize and train ``epochs`` passes over the union of tasks ``0 .. t``."""

    name = "scratch"

    def train_task(self, task: int) -> None:
        if task > 0:
            self.model = self.fresh_model()
        self.optimizer = self.make_optimizer()
        seen = np.concatenate(self.ctx.train_indices[: task + 1])
        self.fit(task, self.batches(seen, salt=1000 + task))
