"""The local (single-rank) rehearsal buffer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reverie import _core
from reverie.samples import Samples
from reverie.schema import FieldsArg, Schema, host_memory_bytes
from reverie.staging import Stage, check_draws, check_replay, check_stage_state, stage_seed
from reverie.state import StateError, check_consistency, check_local_state, local_state, restore_local


def check_buffer_args(capacity: int, num_classes: int | None, candidates: int | None, seed: int) -> None:
    """Raises a ValueError/TypeError naming the first bad constructor argument."""
    if not _is_int(capacity) or not 1 <= capacity < _MAX_SLOTS:
        raise ValueError(f"capacity: expected a positive int below {_MAX_SLOTS}, got {capacity!r}")
    if num_classes is not None:
        if not _is_int(num_classes) or num_classes < 1:
            raise ValueError(f"num_classes: expected None or a positive int, got {num_classes!r}")
        if capacity < num_classes:
            raise ValueError(f"capacity: expected at least num_classes={num_classes} slots, got {capacity}")
    if candidates is not None and (not _is_int(candidates) or not 1 <= candidates < 2**32):
        raise ValueError(f"candidates: expected None or a positive int below 2**32, got {candidates!r}")
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed!r}")


_MAX_SLOTS = 2**32 - 1  # slot indices are uint32


def make_core_buffer(
    schema: Schema, capacity: int, num_classes: int | None, candidates: int, seed: int, passes: bool = False
) -> _core.LocalBuffer:
    """The C++ buffer; ValueError/MemoryError naming ``capacity`` and the bytes asked for
    when they exceed this machine's memory or cannot be allocated."""
    asked = capacity * schema.sample_bytes
    limit = host_memory_bytes()
    what = f"{capacity} samples x {schema.sample_bytes} bytes = {asked} bytes"
    if asked > limit:
        raise ValueError(f"capacity: {what}, more than this machine's {limit} bytes of memory")
    try:
        return _core.LocalBuffer(schema.field_bytes, capacity, num_classes, candidates, seed, passes)
    except MemoryError:
        raise MemoryError(f"capacity: {what} could not be allocated") from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class RehearsalBuffer:
    """A class-balanced reservoir of past samples in one aligned host allocation.

    Args:
        capacity: total samples kept.
        fields: per-sample tensors, ``{name: (shape, dtype)}``, e.g. ``{"x": ((3, 32, 32), torch.float32)}``.
        num_classes: int for fixed quotas (``capacity // num_classes`` per class, labels in
            ``[0, num_classes)``); None for adaptive quotas (capacity shared evenly by the
            classes seen so far, labels >= 0).
        candidates: how many rows of each ``add`` are offered (chosen uniformly); None = all.
        seed: makes insertions and draws reproducible.
        replay: ``"online"`` (default): ``add`` offers its candidates to the buffer at once,
            so draws return them right away (streams without task boundaries). ``"past"``:
            ``add`` stages them and :meth:`end_task` commits the stage, so draws return
            samples of finished tasks only (task boundaries known, as Avalanche's ``Replay``).
            The stage is a second allocation of ``capacity`` samples.
        draws: ``"independent"`` (default): every ``sample`` is a uniform draw of its own.
            ``"passes"``: successive draws walk one random order of the stored samples, so
            each is drawn once per pass before any is drawn twice (an epoch over the memory,
            as a replay data loader iterates it); each draw is still a uniform subset. A new
            pass starts when the buffer's size changes, so this suits ``replay="past"``,
            whose size changes only at ``end_task``.

    Thread-safe: ``add`` and ``sample`` may be called from several threads; copies run
    without the GIL.
    """

    def __init__(
        self,
        capacity: int,
        fields: FieldsArg,
        num_classes: int | None = None,
        candidates: int | None = None,
        seed: int = 0,
        replay: str = "online",
        draws: str = "independent",
    ) -> None:
        check_buffer_args(capacity, num_classes, candidates, seed)
        check_replay(replay)
        check_draws(draws)
        self.schema = Schema(fields)
        self.num_classes = num_classes
        self.candidates = candidates
        self.seed = seed
        self.replay = replay
        self.draws = draws
        passes = draws == "passes"
        self._stage: Stage | None = None
        if replay == "past":  # candidates are chosen when staged; a commit offers every staged row
            self._core = make_core_buffer(self.schema, capacity, num_classes, 0, seed, passes)
            stage = make_core_buffer(self.schema, capacity, num_classes, candidates or 0, stage_seed(seed))
            self._stage = Stage(self.schema, stage, num_classes)
        else:
            self._core = make_core_buffer(self.schema, capacity, num_classes, candidates or 0, seed, passes)

    @property
    def capacity(self) -> int:
        return self._core.capacity

    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return self.schema.as_dict()

    @property
    def nbytes(self) -> int:
        """Host memory footprint in bytes: capacity x sample bytes, plus small metadata
        (twice that with ``replay="past"``: the stage)."""
        return self._core.nbytes + (0 if self._stage is None else self._stage.core.nbytes)

    def __len__(self) -> int:
        """Samples that draws may return (with ``replay="past"``: committed ones)."""
        return self._core.size()

    @property
    def staged(self) -> int:
        """Samples staged for the next :meth:`end_task` (always 0 with ``replay="online"``)."""
        return 0 if self._stage is None else len(self._stage)

    def add(
        self,
        fields: Mapping[str, torch.Tensor] | torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> int:
        """Offers a minibatch; returns how many samples were stored (``replay="past"``: staged).

        Args:
            fields: ``{name: tensor [b, *shape]}`` (a bare tensor when there is one field);
                CPU, contiguous, of the declared dtype. Copied: the caller may reuse them.
            labels: int64 ``[b]``.
            weights: float32 ``[b]``, finite and >= 0; None means 1.0 for every sample.

        Field values are stored bit for bit: NaN and infinity are data here, not errors.
        """
        ptrs, n, _alive = self.schema.batch_pointers(fields, labels, weights)
        error = self._core.check_labels(ptrs[len(self.schema.fields)], n)
        if error:
            raise ValueError(error)
        if self._stage is not None:
            return self._stage.add(ptrs, n)
        return self._core.add(ptrs, n)

    def end_task(self) -> int:
        """Task boundary. ``replay="past"``: offers every staged sample to the buffer (the
        class-balanced reservoir decides which stay) and empties the stage; from now on
        draws may return them. Returns how many were offered (0 with ``replay="online"``,
        where it does nothing)."""
        if self._stage is None:
            return 0
        rows = self._stage.take()
        n = int(rows["labels"].shape[0])
        if n:
            ptrs, n, _alive = self.schema.batch_pointers(rows["fields"], rows["labels"], rows["weights"])
            self._core.add(ptrs, n)
        return n

    def allocate(self, r: int) -> Samples:
        """Preallocated output for ``sample(r, out=...)``."""
        _check_r(r)
        return self.schema.allocate(r)

    def sample(self, r: int, out: Samples | None = None) -> Samples:
        """Draws min(r, len(self)) distinct stored samples, uniformly without replacement.

        Returns Samples with fields ``[k, *shape]``, ``labels [k]`` and ``weights [k]``;
        ``len(result)`` says k. With ``out`` the samples are written into its tensors
        (no allocation) and the result holds views of their first k rows (``out`` itself
        when k fills it exactly).
        """
        _check_r(r)
        if out is None:
            out = self.schema.allocate(r)
        ptrs = self.schema.out_pointers(out, r)
        k = self._core.sample(r, ptrs)
        if k == r and _exactly_rows(out, r):
            return out  # already views of exactly k rows: skip building new views
        return out.narrow(k)

    def class_counts(self) -> dict[int, int]:
        """Stored samples per label."""
        return dict(self._core.class_counts())

    def state_dict(self) -> dict[str, Any]:
        """Contents, counts, reservoir and RNG state: restoring it gives the same future draws.
        Works with ``torch.save`` / ``torch.load`` (see README "Checkpoints")."""
        return {
            "version": 1,
            "capacity": self.capacity,
            "fields": self.fields,
            "num_classes": self.num_classes,
            "candidates": self.candidates,
            "seed": self.seed,
            "replay": self.replay,
            "draws": self.draws,
            **local_state(self.schema, self._core),
            **({} if self._stage is None else {"stage": self._stage.state()}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a ``state_dict`` taken from a buffer with the same capacity, fields,
        quotas and replay mode (a state without ``replay`` is an online buffer's)."""
        if not isinstance(state, Mapping):
            raise StateError(f"state_dict: expected a dict, got {type(state).__name__}")
        for key in ("capacity", "num_classes"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"state_dict: {key} is {state.get(key)!r}, this buffer has {getattr(self, key)!r}"
                )
        for key, default in (("replay", "online"), ("draws", "independent")):
            if state.get(key, default) != getattr(self, key):
                raise ValueError(
                    f"state_dict: {key} is {state.get(key)!r}, this buffer has {getattr(self, key)!r}"
                )
        if not isinstance(state.get("fields"), Mapping) or dict(state["fields"]) != self.fields:
            raise ValueError(
                f"state_dict: fields are {state.get('fields')!r}, this buffer has {self.fields!r}"
            )
        if self._stage is not None:  # every check before anything changes
            check_local_state(state, self.schema, self.capacity, "state_dict")
            check_consistency(state, self.capacity, self.num_classes, "state_dict")
            check_stage_state(
                state.get("stage"), self.schema, self.capacity, self.num_classes, "state_dict.stage"
            )
        restore_local(self.schema, self._core, state, "state_dict")
        if self._stage is not None:
            self._stage.restore(state["stage"], "state_dict.stage")

    def __repr__(self) -> str:
        staged = f", staged={self.staged}" if self._stage is not None else ""
        return f"RehearsalBuffer(size={len(self)}{staged}, capacity={self.capacity}, fields={self.fields})"


def _exactly_rows(out: Samples, k: int) -> bool:
    return (
        out.labels.shape[0] == k and out.weights.shape[0] == k and all(t.shape[0] == k for t in out.values())
    )


def _check_r(r: int) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise ValueError(f"r: expected a non-negative int, got {r!r}")
