"""``rehearsal``: experience replay through ``reverie.RehearsalLoader``.

Every step trains on the ``b`` new samples plus ``r`` representatives drawn uniformly from
the global (all-rank) buffer; the loader offers candidates from each new minibatch to the
local buffer and prefetches the next step's representatives while this one trains.

With ``replay_balance`` (the default) each replayed sample weighs ``b / r'`` in the mean
loss, so the replayed rows count as much as the new ones whatever ``r`` is: the loss is
the mean cross-entropy of the new rows plus that of the replayed rows, up to a factor, as
DER++ adds its terms. Fewer representatives then keep most of the accuracy at a fraction
of the extra compute (on MNIST-1D with b = 32: r = 16 balanced reached 90-92% where plain
r = 16 reached 87-89% and plain r = 32 91-95%).

``replay``: the buffer's mode (``DistributedRehearsalBuffer(replay=...)``). ``online``
offers each minibatch's candidates to the buffer at once, so a task's draws also replay
the task itself; ``past`` stages them and commits them at the task boundary
(``RehearsalLoader.end_task``), so every draw replays earlier tasks only, as Avalanche's
``Replay`` does when task boundaries are known. In ``past`` mode candidates are offered in
a task's first epoch only: later epochs pass over the same samples, and offering them again
would let the stage keep one sample twice.

``deterministic``: inserts and draws happen at defined points, so two runs with the same
seed, rank count and engine give the same accuracy matrices: every rank applies its
step's insert (flush) before any rank draws, the ranks draw one after the other (an owner
serves one requester at a time), and nobody inserts again before every draw is back. Three
barriers per step and no overlap of draws with compute: slower, for reproducible runs.
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
        fields = {"x": (ctx.data.input_shape, torch.float32)}
        self.buffer = make_buffer(ctx, fields, ctx.config.replay, ctx.config.replay_draws)
        self.loader_stats: list[dict[str, Any]] = []

    def train_task(self, task: int) -> None:
        from reverie import RehearsalLoader

        self.optimizer = self.task_optimizer(task)
        past = self.cfg.replay == "past"
        batches = self.batches(self.ctx.train_indices[task], salt=task)
        r = self.ctx.per_rank(self.cfg.representatives)
        loader: Any

        # One pass of the loader over every epoch of the task: only the task's first step
        # goes without replayed rows (a loader's first step has no draw in flight).
        def on_epoch(epoch: int) -> None:
            loader.offer = not past or epoch == 0  # past: each sample is staged once

        passes = _Epochs(batches, self.epochs(task), self.cfg.epochs, on_epoch)
        if self.cfg.deterministic:
            loader = _LockstepLoader(passes, self.buffer, r, self)
        else:
            loader = RehearsalLoader(passes, self.buffer, representatives=r, device=str(self.device))
        for x, y, w in loader:  # x [b + r', ...], y [b + r'], w [b + r']
            self.step(x, y, self.replay_weights(w, loader.drawn))
        self.buffer.end_task()  # past: this task's candidates become drawable; online: a flush
        if self.cfg.deterministic:
            loader.barrier()  # every rank's commit is applied before any rank draws
        stats = getattr(loader, "stats", None)
        if callable(stats):
            self.loader_stats.append(stats())

    def replay_weights(self, w: torch.Tensor, replayed: int) -> torch.Tensor:
        """Sample weights ``[b + r']`` for the loss: the stored ones, with the last ``r'``
        (replayed) scaled by ``b / r'`` when ``replay_balance`` is on."""
        if not self.cfg.replay_balance or replayed <= 0:
            return w
        scale = torch.ones_like(w)
        scale[-replayed:] = (w.shape[0] - replayed) / replayed
        return w * scale

    def buffer_info(self) -> dict[str, Any]:
        info = buffer_report(self.buffer, self.cfg.buffer_size, self.ctx.group.world_size)
        if self.loader_stats:
            info["loader_stats_per_task"] = self.loader_stats
        return info

    def close(self) -> None:
        self.buffer.close()


class _Epochs:
    """The batches of every epoch of a task, one after the other; ``on_epoch(e)`` runs
    before epoch e's first batch (``len``: all of them)."""

    def __init__(self, batches: Any, epochs: Any, count: int, on_epoch: Any) -> None:
        self.batches, self.epochs, self.count, self.on_epoch = batches, epochs, count, on_epoch

    def __len__(self) -> int:
        return len(self.batches) * self.count

    def __iter__(self) -> Any:
        for epoch in self.epochs:
            self.on_epoch(epoch)
            yield from self.batches


class _LockstepLoader:
    """``RehearsalLoader``'s batches (b new rows + r' replayed) with inserts and draws at
    defined points (``deterministic``): insert and flush, barrier; draw in rank order, one
    rank at a time, each waiting for its rows; barrier; train."""

    def __init__(self, batches: Any, buffer: Any, representatives: int, owner: Rehearsal) -> None:
        self.batches, self.buffer = batches, buffer
        self.offer = True  # as RehearsalLoader.offer
        self.representatives, self.group = representatives, owner.ctx.group
        # MPI's barrier, not gloo's (TCP): digits, 2 tasks, 4 epochs, 2 ranks trained in
        # 4.6 s against 16.8 s with gloo's (1.5 s without --deterministic).
        self.barrier = self.group.comm.Barrier if self.group.comm is not None else self.group.barrier
        self.timeout = owner.cfg.buffer_timeout
        self.drawn = 0

    def __len__(self) -> int:
        return len(self.batches)

    def _draw(self) -> Any:
        """This rank's draw, taken in its turn (an owner's sampling then sees one request
        at a time, in rank order, whatever the timing)."""
        draw = None
        for turn in range(self.group.world_size):
            if turn == self.group.rank:
                draw = self.buffer.get_remote_samples(self.representatives).wait(timeout=self.timeout)
                draw = draw.clone()  # the views are reused by later draws
            self.barrier()
        return draw

    def __iter__(self) -> Any:
        for x, y in self.batches:
            if self.offer:
                self.buffer.add({"x": x.contiguous()}, y.contiguous())
            self.buffer.flush()
            self.barrier()  # every rank's insert is applied before any rank draws
            draw = self._draw()
            self.drawn = len(draw)
            w = torch.ones(len(y))
            if not self.drawn:
                yield x, y, w
                continue
            yield (
                torch.cat([x, draw["x"]]),
                torch.cat([y, draw.labels]),
                torch.cat([w, draw.weights]),
            )
