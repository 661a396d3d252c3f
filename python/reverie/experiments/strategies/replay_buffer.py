"""Creating the DistributedRehearsalBuffer that the replay strategies share."""

from __future__ import annotations

from typing import Any

import torch

from .base import TrainingContext


def make_buffer(
    ctx: TrainingContext,
    fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
    replay: str = "online",
    draws: str = "independent",
) -> Any:
    """A ``reverie.DistributedRehearsalBuffer`` over the job's MPI communicator.

    Args:
        ctx: run context (buffer size, candidates, representatives, seed, engine, timeout);
            the job-wide buffer size and candidates are split evenly over the ranks.
        fields: field name -> (shape of one sample, dtype), e.g. ``{"x": ((1, 40), torch.float32)}``.
        replay: the buffer's ``replay`` mode (``"past"``: draws see finished tasks only).
        draws: the buffer's ``draws`` mode (``"passes"``: each sample once per pass).
    Returns:
        the buffer (adaptive class quotas: ``num_classes=None``); close it when done.
    """
    try:
        from reverie import DistributedRehearsalBuffer
    except ImportError as e:  # pragma: no cover - depends on the build
        raise RuntimeError(
            "the replay strategies need reverie's compiled core "
            "(reverie.DistributedRehearsalBuffer); build/install reverie first"
        ) from e
    if ctx.group.comm is None:
        raise RuntimeError("the replay strategies need mpi4py (the buffer runs over MPI)")
    cfg = ctx.config
    return DistributedRehearsalBuffer(
        capacity=ctx.per_rank(cfg.buffer_size),
        fields=fields,
        num_classes=None,
        candidates=ctx.per_rank(cfg.candidates),
        seed=cfg.seed,
        comm=ctx.group.comm,
        engine=cfg.engine,
        max_representatives=max(64, cfg.representatives),
        timeout=cfg.buffer_timeout,
        replay=replay,
        draws=draws,
    )


def buffer_report(buffer: Any, capacity_global: int, world_size: int) -> dict[str, Any]:
    """Sizes and replay modes of ``buffer`` for the results (collective: every rank must
    call it)."""
    return {
        "capacity_per_rank": capacity_global // world_size,
        "capacity_global": capacity_global,
        "local_size": len(buffer),
        "global_size": int(buffer.global_size()),
        "replay": buffer.replay,
        "replay_draws": buffer.draws,
    }
