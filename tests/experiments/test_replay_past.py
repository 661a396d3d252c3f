"""``--replay past``: a task's samples enter the buffer at the task boundary, so every draw
during task t replays tasks < t only; ``online`` replays the current task too. Rehearsal,
DER and DER++ (both its draws); one rank (an MPI singleton), tiny synthetic data; a few
seconds each."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from reverie.experiments.config import resolve_config
from reverie.experiments.datasets import load_dataset
from reverie.experiments.process_group import init_process_group
from reverie.experiments.scenarios import make_scenario
from reverie.experiments.strategies import TrainingContext, make_strategy


def _record_rehearsal(strategy: Any, labels: list[list[int]], task: list[int]) -> None:
    """Appends the labels of every step's replayed rows (the last r' of the batch) to
    ``labels[task[0]]``."""
    counts: list[int] = []
    weights, step = strategy.replay_weights, strategy.step

    def record_count(w: torch.Tensor, replayed: int) -> torch.Tensor:
        counts.append(replayed)
        return weights(w, replayed)

    def record(x: torch.Tensor, y: torch.Tensor, w: Any = None) -> float:
        labels[task[0]] += y[len(y) - counts[-1] :].tolist()
        return step(x, y, w)

    strategy.replay_weights, strategy.step = record_count, record


def _record_der(strategy: Any, labels: list[list[int]], task: list[int]) -> None:
    """Appends the labels of every step's draws (DER++: both) to ``labels[task[0]]``."""
    replay_step = strategy.replay_step

    def record(x: torch.Tensor, y: torch.Tensor, *draws: Any) -> torch.Tensor:
        for draw in draws:
            labels[task[0]] += draw.labels.tolist()
        return replay_step(x, y, *draws)

    strategy.replay_step = record


def _replayed_labels(name: str, replay: str) -> list[list[int]]:
    """Labels of the replayed rows of every step, per task, of strategy ``name`` with
    ``--replay replay``."""
    cfg = resolve_config(
        {
            "dataset": "synthetic", "synthetic_samples": 400, "tasks": 2, "epochs": 2, "model": "mlp",
            "batch_size": 8, "representatives": 8, "candidates": 8, "buffer_size": 40,
            "replay": replay, "ranks": 1, "progress": False, "seed": 0,
        }
    )  # fmt: skip
    group = init_process_group("cpu")
    try:
        data = load_dataset("synthetic", synthetic_samples=400)
        tasks = make_scenario("class", data.train_labels, data.test_labels, 10, 2)
        ctx = TrainingContext(cfg, group, data, tasks, [t.train_indices for t in tasks], lambda it, **_: it)
        strategy: Any = make_strategy(name, ctx)
        labels: list[list[int]] = [[], []]
        task = [0]
        (_record_rehearsal if name == "rehearsal" else _record_der)(strategy, labels, task)
        try:
            for task[0] in range(2):
                strategy.train_task(task[0])
        finally:
            strategy.close()
        return labels
    finally:
        group.close()


@pytest.mark.parametrize("name", ["rehearsal", "der", "derpp"])
def test_past_replays_earlier_tasks_only_online_the_current_too(name: str) -> None:
    pytest.importorskip("mpi4py")
    pytest.importorskip("reverie.loader", reason="reverie's compiled core is not built")
    past = _replayed_labels(name, "past")
    assert past[0] == [], "nothing is committed before the first boundary"
    assert len(past[1]) > 0 and set(past[1]) <= set(range(5)), np.bincount(past[1])
    online = _replayed_labels(name, "online")
    assert len(online[0]) > 0 and set(online[0]) <= set(range(5))
    assert set(online[1]) & set(range(5, 10)), "online draws replay the current task too"
