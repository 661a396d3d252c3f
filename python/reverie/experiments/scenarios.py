"""Continual-learning scenarios: how a dataset is cut into a sequence of tasks (the ranks
split every global batch of a task, see :mod:`reverie.experiments.batches`).

* class-incremental: the classes are split into ``T`` disjoint groups (evenly, or a first
  group of ``initial_increment`` classes and the rest evenly); task ``t`` holds the train and
  test samples of group ``t``. The model has one head over all classes.
* instance-incremental: every task holds all classes; the train (and test) samples are split
  into ``T`` disjoint, class-stratified parts.

Everything here is pure index arithmetic on label arrays and is deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCENARIOS = ("class", "instance")


@dataclass(frozen=True)
class Task:
    """One task of a scenario.

    Attributes:
        index: position in the sequence, 0-based.
        classes: the classes whose samples the task holds (sorted).
        train_indices: int64 indices into the dataset's train split (sorted).
        test_indices: int64 indices into the dataset's test split (sorted).
    """

    index: int
    classes: tuple[int, ...]
    train_indices: np.ndarray
    test_indices: np.ndarray


def class_groups(
    num_classes: int, tasks: int, initial_increment: int = 0, class_order: np.ndarray | None = None
) -> list[tuple[int, ...]]:
    """Split ``num_classes`` classes into ``tasks`` groups.

    Args:
        num_classes: number of classes ``K``.
        tasks: number of tasks ``T`` (1 <= T <= K).
        initial_increment: classes in the first task; 0 splits all classes evenly (the first
            groups get one more class when ``K`` is not a multiple of ``T``).
        class_order: a permutation of ``range(K)``; default the natural order.
    Returns:
        ``T`` tuples of sorted class ids, disjoint, covering all classes.
    """
    if tasks < 1 or tasks > num_classes:
        raise ValueError(f"tasks: must be in 1..{num_classes} for a class-incremental split, got {tasks}")
    order = np.arange(num_classes) if class_order is None else np.asarray(class_order)
    if sorted(order.tolist()) != list(range(num_classes)):
        raise ValueError("class_order: must be a permutation of range(num_classes)")
    if initial_increment:
        rest = num_classes - initial_increment
        if initial_increment < 1 or (tasks > 1 and rest < tasks - 1) or (tasks == 1 and rest != 0):
            raise ValueError(
                f"initial_increment: {initial_increment} leaves too few classes for "
                f"{tasks - 1} more tasks of {num_classes} classes"
            )
        parts = [order[:initial_increment]]
        if tasks > 1:
            parts += np.array_split(order[initial_increment:], tasks - 1)
    else:
        parts = np.array_split(order, tasks)
    return [tuple(sorted(int(c) for c in p)) for p in parts]


def class_incremental(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    tasks: int,
    initial_increment: int = 0,
    class_order: np.ndarray | None = None,
) -> list[Task]:
    """Class-incremental tasks: task ``t`` holds every sample of its class group."""
    groups = class_groups(num_classes, tasks, initial_increment, class_order)
    out = []
    for t, cls in enumerate(groups):
        tr = np.flatnonzero(np.isin(train_labels, cls)).astype(np.int64)
        te = np.flatnonzero(np.isin(test_labels, cls)).astype(np.int64)
        out.append(Task(t, cls, tr, te))
    return out


def _stratified_parts(labels: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``parts`` disjoint class-stratified index sets."""
    chunks: list[list[np.ndarray]] = [[] for _ in range(parts)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for p, piece in enumerate(np.array_split(idx, parts)):
            chunks[p].append(piece)
    return [np.sort(np.concatenate(ch)).astype(np.int64) for ch in chunks]


def instance_incremental(
    train_labels: np.ndarray, test_labels: np.ndarray, tasks: int, seed: int = 0
) -> list[Task]:
    """Instance-incremental tasks: same classes in every task, new samples per task.

    Train and test samples are each split into ``tasks`` disjoint class-stratified parts,
    deterministically for ``seed``.
    """
    if tasks < 1:
        raise ValueError(f"tasks: must be >= 1, got {tasks}")
    rng = np.random.default_rng([seed, 0x1CE])
    train_parts = _stratified_parts(train_labels, tasks, rng)
    test_parts = _stratified_parts(test_labels, tasks, rng)
    classes = tuple(int(c) for c in np.unique(train_labels))
    return [Task(t, classes, train_parts[t], test_parts[t]) for t in range(tasks)]


def make_scenario(
    scenario: str,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    tasks: int,
    initial_increment: int = 0,
    seed: int = 0,
) -> list[Task]:
    """Build the tasks of ``scenario`` ("class" or "instance")."""
    if scenario == "class":
        return class_incremental(train_labels, test_labels, num_classes, tasks, initial_increment)
    if scenario == "instance":
        if initial_increment:
            raise ValueError("initial_increment: only meaningful for the class-incremental scenario")
        return instance_incremental(train_labels, test_labels, tasks, seed)
    raise ValueError(f"scenario: unknown {scenario!r}; choose one of {', '.join(SCENARIOS)}")
