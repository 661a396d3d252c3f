"""Scenario splitting: classes per task, disjointness, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from reverie.experiments.scenarios import (
    class_groups,
    class_incremental,
    instance_incremental,
    make_scenario,
)


def labels(n_per_class: int = 30, classes: int = 10, seed: int = 0) -> np.ndarray:
    y = np.repeat(np.arange(classes), n_per_class)
    return np.random.default_rng(seed).permutation(y)


def test_even_class_split() -> None:
    assert class_groups(10, 5) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [len(g) for g in class_groups(10, 3)] == [4, 3, 3]


def test_initial_increment() -> None:
    groups = class_groups(10, 4, initial_increment=4)
    assert groups == [(0, 1, 2, 3), (4, 5), (6, 7), (8, 9)]
    with pytest.raises(ValueError, match="initial_increment"):
        class_groups(10, 5, initial_increment=8)


def test_bad_task_count_names_argument() -> None:
    with pytest.raises(ValueError, match="tasks"):
        class_groups(10, 11)


def test_class_incremental_tasks_hold_their_classes_only() -> None:
    ytr, yte = labels(30), labels(10, seed=1)
    tasks = class_incremental(ytr, yte, 10, 5)
    assert len(tasks) == 5
    seen: set[int] = set()
    for t in tasks:
        assert set(np.unique(ytr[t.train_indices])) == set(t.classes)
        assert set(np.unique(yte[t.test_indices])) == set(t.classes)
        assert len(t.train_indices) == 60 and len(t.test_indices) == 20
        assert seen.isdisjoint(t.classes)
        seen |= set(t.classes)
    assert seen == set(range(10))


def test_instance_incremental_disjoint_stratified_deterministic() -> None:
    ytr, yte = labels(30), labels(10, seed=1)
    tasks = instance_incremental(ytr, yte, 3, seed=5)
    all_train = np.concatenate([t.train_indices for t in tasks])
    assert len(all_train) == len(set(all_train.tolist())) == len(ytr)
    for t in tasks:
        assert t.classes == tuple(range(10))
        assert np.all(np.bincount(ytr[t.train_indices], minlength=10) == 10)
    again = instance_incremental(ytr, yte, 3, seed=5)
    assert all(np.array_equal(a.train_indices, b.train_indices) for a, b in zip(tasks, again, strict=True))
    other = instance_incremental(ytr, yte, 3, seed=6)
    assert not all(
        np.array_equal(a.train_indices, b.train_indices) for a, b in zip(tasks, other, strict=True)
    )


def test_make_scenario_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="scenario"):
        make_scenario("domain", labels(), labels(), 10, 5)
