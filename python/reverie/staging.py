"""``replay="past"``: the current task's candidates, staged until the task boundary.

Both buffers keep, beside the buffer that draws read, a stage: a second C++ buffer of the
same capacity and quotas that takes every ``add`` (its candidates chosen as the buffer's
would be) and that no draw reads. ``end_task()`` offers the staged rows to the buffer
(every one of them: the candidates were chosen when they were staged) and empties the
stage, so a draw only ever returns samples of tasks that ended before it.

The stage's class reservoir keeps, per class, a uniform sample of that class's candidates
of the task; offering it to the buffer's class reservoir keeps a uniform sample of a
uniform sample, so each class of a finished task is represented as online insertion would
have represented it. A class met again in a later task counts only its staged rows as seen
(not every candidate of that task): exact for class-incremental streams, an approximation
where classes recur.
"""

from __future__ import annotations

import threading
from typing import Any

from reverie.schema import Schema
from reverie.state import StateError, check_consistency, check_local_state, local_state, restore_local

REPLAY_MODES = ("online", "past")
DRAW_MODES = ("independent", "passes")
#: Mixed into the stage's seed so that its generators never replay the buffer's sequence.
_STAGE_SEED_SALT = 0x9E3779B97F4A7C15


def check_replay(replay: object) -> None:
    """ValueError naming ``replay`` unless it is one of :data:`REPLAY_MODES`."""
    if not isinstance(replay, str) or replay not in REPLAY_MODES:
        raise ValueError(f"replay: expected one of {REPLAY_MODES}, got {replay!r}")


def check_draws(draws: object) -> None:
    """ValueError naming ``draws`` unless it is one of :data:`DRAW_MODES`."""
    if not isinstance(draws, str) or draws not in DRAW_MODES:
        raise ValueError(f"draws: expected one of {DRAW_MODES}, got {draws!r}")


def stage_seed(seed: int) -> int:
    """The stage's seed for a buffer seeded ``seed`` (both in [0, 2**64))."""
    return seed ^ _STAGE_SEED_SALT


class Stage:
    """The staged candidates of the current task: a ``_core.LocalBuffer`` that no draw reads.

    Args:
        schema: the buffer's fields.
        core: a fresh ``_core.LocalBuffer`` with the buffer's capacity and quotas and the
            buffer's ``candidates`` (chosen here, at staging time).
        num_classes: the buffer's fixed quotas, or None (adaptive).
    """

    def __init__(self, schema: Schema, core: Any, num_classes: int | None) -> None:
        self.schema = schema
        self.core = core
        self.num_classes = num_classes
        self._lock = threading.Lock()  # take() empties the stage with no add in between

    def __len__(self) -> int:
        return int(self.core.size())

    def add(self, ptrs: list[int], n: int) -> int:
        """Stages the candidates of ``n`` rows (labels already checked); returns how many
        were kept."""
        with self._lock:
            return int(self.core.add(ptrs, n))

    def take(self) -> dict[str, Any]:
        """The staged rows (``{"fields": {name: [k, ...]}, "labels": [k], "weights": [k]}``,
        copies) and an empty stage; its generators go on where they were."""
        with self._lock:
            return self._take_locked()

    def _take_locked(self) -> dict[str, Any]:
        state = local_state(self.schema, self.core)
        policy = dict(state["policy"])
        if self.num_classes is None:
            policy["classes"] = []
        else:
            policy["classes"] = [(c, 0, []) for c in range(self.num_classes)]
        policy["saturated"] = False
        empty = self.schema.allocate(0)
        restore_local(
            self.schema,
            self.core,
            {
                "samples": {"fields": dict(empty), "labels": empty.labels, "weights": empty.weights},
                "policy": policy,
            },
            "stage",
        )
        return state["samples"]

    def state(self) -> dict[str, Any]:
        """The stage's ``local_state`` (contents, reservoir, generators) for checkpoints."""
        return local_state(self.schema, self.core)

    def restore(self, state: Any, where: str) -> None:
        """Restores a ``state()``; StateError naming ``where`` and the field, nothing changed."""
        restore_local(self.schema, self.core, state, where)


def check_stage_state(state: Any, schema: Schema, capacity: int, num_classes: int | None, where: str) -> None:
    """A saved stage: the checks of a buffer's own state (types, shapes, reservoir
    consistency); StateError naming ``where`` and the field."""
    if state is None:
        raise StateError(f"{where}: missing (a replay='past' buffer saves its staged rows)")
    check_local_state(state, schema, capacity, where)
    check_consistency(state, capacity, num_classes, where)
