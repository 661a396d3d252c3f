"""``rehearsal``: experience replay through ``reverie.RehearsalLoader``.

Every step trains on the ``b`` new samples plus ``r`` representatives drawn uniformly from
the global (all-rank) buffer; the loader offers candidates from each new minibatch to the
local buffer and prefetches the next step's representatives while this one trains.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Strategy, TrainingContext
from .replay_buffer import buffer_report, make_buffer


class Rehearsal(Strategy):
    """Experience replay with a distributed class-balanced reservoir buffer."""

    name = "rehearsal"

    def __init__(self, ctx: TrainingContext) -> None:
        super().__init__(ctx)
        self.buffer = make_buffer(ctx, {"x": (ctx.data.input_shape, torch.float32)})
        self.loader_stats: list[dict[str, Any]] = []

    def train_task(self, task: int) -> None:
        from reverie import RehearsalLoader

        self.optimizer = self.make_optimizer()
        loader = RehearsalLoader(
            self.batches(self.ctx.train_shards[task], salt=task),
            self.buffer,
            representatives=self.cfg.representatives,
            device=str(self.device),
        )
        for _ in self.epochs(task):
            for x, y, w in loader:  # x [b + r', ...], y [b + r'], w [b + r']
                self.step(x, y, w)
        self.buffer.flush()
        stats = getattr(loader, "stats", None)
        if callable(stats):
            self.loader_stats.append(stats())

    def buffer_info(self) -> dict[str, Any]:
        info = buffer_report(self.buffer, self.cfg.buffer_size, self.ctx.group.world_size)
        if self.loader_stats:
            info["loader_stats_per_task"] = self.loader_stats
        return info

    def close(self) -> None:
        self.buffer.close()
