"""Accuracy matrix metrics on hand-made matrices, and top-k counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from reverie.experiments.evaluation import (
    backward_transfer,
    forgetting,
    mean_accuracy_after_each_task,
    new_matrix,
    topk_correct,
)

NAN = math.nan
# A[i, j]: accuracy on task j after training task i.
MATRIX = np.array(
    [
        [0.9, NAN, NAN],
        [0.6, 0.8, NAN],
        [0.5, 0.7, 1.0],
    ]
)


def test_mean_accuracy_after_each_task() -> None:
    assert mean_accuracy_after_each_task(MATRIX) == pytest.approx([0.9, 0.7, (0.5 + 0.7 + 1.0) / 3])


def test_forgetting_hand_computed() -> None:
    # task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: 0.8 - 0.7 = 0.1 -> mean 0.25
    assert forgetting(MATRIX) == pytest.approx(0.25)
    # after task 1: task 0 dropped 0.9 -> 0.6
    assert forgetting(MATRIX, after=1) == pytest.approx(0.3)
    assert forgetting(MATRIX[:1, :1]) == 0.0


def test_forgetting_uses_best_earlier_accuracy() -> None:
    m = np.array([[0.5, NAN, NAN], [0.9, 0.8, NAN], [0.7, 0.8, 0.9]])
    assert forgetting(m) == pytest.approx(((0.9 - 0.7) + 0.0) / 2)


def test_backward_transfer() -> None:
    assert backward_transfer(MATRIX) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_partial_matrix_stops_at_first_unevaluated_row() -> None:
    m = new_matrix(3)
    m[0, 0] = 1.0
    assert mean_accuracy_after_each_task(m) == [1.0]


class Fixed(torch.nn.Module):
    """Logits that rank class (label + k) % 10 first, so top-1 is always wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = x[:, 0].long()
        logits = torch.zeros(len(x), 10)
        logits[torch.arange(len(x)), (label + 1) % 10] = 3.0
        logits[torch.arange(len(x)), label] = 2.0  # second best
        return logits


def test_topk_correct() -> None:
    y = torch.arange(20) % 10
    ds = TensorDataset(y.float()[:, None], y)
    hits, n = topk_correct(Fixed(), ds, np.arange(20), torch.device("cpu"), batch_size=7)
    assert n == 20 and hits == [0, 20]
