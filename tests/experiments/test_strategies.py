"""Strategy pieces that need no ranks: the rehearsal strategy's balanced replay weights."""

from __future__ import annotations

import torch

from reverie.experiments.config import ExperimentConfig
from reverie.experiments.strategies.rehearsal import Rehearsal


def _rehearsal(**options: object) -> Rehearsal:
    strategy = object.__new__(Rehearsal)  # no model or buffer: only the weighting is tested
    strategy.cfg = ExperimentConfig(**options)  # type: ignore[arg-type]
    return strategy


def test_balanced_replay_weights_give_new_and_replayed_rows_equal_total_weight() -> None:
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 1.0])  # b = 4 new rows, r' = 2 replayed
    out = _rehearsal(batch_size=4).replay_weights(w, 2)
    assert torch.allclose(out, torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 2.0]))
    assert torch.equal(w, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 1.0])), "the loader's tensor is left alone"
    ones = torch.ones(7)  # a short last minibatch: b' = 4 new rows, r' = 3 replayed
    out = _rehearsal(batch_size=32).replay_weights(ones, 3)
    assert torch.isclose(out[:4].sum(), out[4:].sum())


def test_no_scaling_without_replayed_rows_or_with_balance_off() -> None:
    w = torch.ones(5)
    assert _rehearsal().replay_weights(w, 0) is w
    assert _rehearsal(replay_balance=False).replay_weights(w, 2) is w
