"""A local buffer's state (contents, reservoir, RNGs) and the checks it passes before restore.

A state may come from a file someone else wrote, so every field is checked for type and
shape here, and for consistency (classes against labels, slots, quotas) by the C++ core,
before anything is changed. A state that fails raises ``StateError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reverie import _core
from reverie.schema import Schema

RNG_WORDS = 4  # xoshiro256**


class StateError(ValueError):
    """A saved state that cannot be restored as it is; nothing was changed."""


def local_state(schema: Schema, core: Any) -> dict[str, Any]:
    """Contents (slots in order), reservoir and RNG state of a ``_core.LocalBuffer``."""
    for _ in range(100):  # the size only grows, so a retry sees a larger, stable count
        n = core.size()
        rows = schema.allocate(n)
        policy = core.state(schema.out_pointers(rows, n), n)
        if policy is not None:
            break
    else:
        raise RuntimeError("save: the buffer kept growing while being saved")
    return {
        "samples": {"fields": dict(rows), "labels": rows.labels, "weights": rows.weights},
        "policy": policy,
    }


def restore_local(schema: Schema, core: Any, state: Mapping[str, Any], where: str = "state") -> None:
    """Checks a ``local_state`` and writes it into a buffer of the same layout and quotas.
    Raises StateError (prefixed with ``where``) and changes nothing when it is not consistent."""
    check_local_state(state, schema, core.capacity, where)
    samples = state["samples"]
    ptrs, n, _alive = schema.batch_pointers(samples["fields"], samples["labels"], samples["weights"])
    try:
        core.restore(_policy_for_core(state["policy"]), ptrs, n)
    except ValueError as exc:  # the core's consistency checks (std::invalid_argument)
        raise StateError(f"{where}: {exc}") from None


def check_local_state(state: object, schema: Schema, capacity: int, where: str = "state") -> None:
    """Types and shapes of a ``local_state``; StateError naming the first bad field."""
    top = _mapping(state, where, ("samples", "policy"))
    samples = _mapping(top["samples"], f"{where}.samples", ("fields", "labels", "weights"))
    n = _tensor(samples["labels"], f"{where}.samples.labels", torch.int64, None)
    if n > capacity:
        raise StateError(f"{where}.samples: {n} samples for a buffer of capacity {capacity}")
    fields = _mapping(samples["fields"], f"{where}.samples.fields", tuple(schema.names))
    if set(fields) != set(schema.names):
        raise StateError(f"{where}.samples.fields: expected fields {schema.names}, got {sorted(fields)}")
    for spec in schema.fields:
        _tensor(fields[spec.name], f"{where}.samples.fields[{spec.name!r}]", spec.dtype, (n, *spec.shape))
    weights = samples["weights"]
    _tensor(weights, f"{where}.samples.weights", torch.float32, (n,))
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise StateError(f"{where}.samples.weights: expected finite values >= 0")
    check_policy(top["policy"], n, f"{where}.policy")


def check_consistency(state: Mapping[str, Any], capacity: int, num_classes: int | None, where: str) -> None:
    """A state that passed ``check_local_state`` against the quotas: the C++ core's restore
    checks (one class per label, distinct slots, labels of member rows), without allocating
    a buffer. StateError naming what is wrong."""
    labels = state["samples"]["labels"]
    error = _core.check_buffer_state(
        _policy_for_core(state["policy"]), labels.data_ptr(), int(labels.shape[0]), capacity, num_classes
    )
    if error:
        raise StateError(f"{where}: {error}")


def check_policy(policy: object, n: int, where: str) -> None:
    """The reservoir part: classes as (label, seen, member slots), RNG states, saturation."""
    p = _mapping(policy, where, ("classes", "insert_rng", "sample_rng"))
    for key in ("insert_rng", "sample_rng"):
        check_rng(p[key], f"{where}.{key}")
    if not isinstance(p.get("saturated", False), bool):
        raise StateError(f"{where}.saturated: expected a bool, got {p['saturated']!r}")
    if "pass" in p:
        check_pass(p["pass"], f"{where}.pass")
    classes = p["classes"]
    if not isinstance(classes, (list, tuple)):
        raise StateError(f"{where}.classes: expected a list, got {type(classes).__name__}")
    members = 0
    for i, entry in enumerate(classes):
        _label, _seen, slots = _class_entry(entry, f"{where}.classes[{i}]")
        members += len(slots)
    if members != n:
        raise StateError(f"{where}.classes: {members} member slots for {n} samples")


def check_pass(value: object, where: str) -> None:
    """Where draws are in their pass (``draws="passes"``): (key, position, n), three ints in
    [0, 2**64) with position <= n."""
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_u64(w) for w in value):
        raise StateError(f"{where}: expected (key, position, n), three ints in [0, 2**64), got {value!r}")
    if value[1] > value[2]:
        raise StateError(f"{where}: position {value[1]} is past the pass's end {value[2]}")


def check_rng(value: object, where: str) -> None:
    """A generator state: 4 words in [0, 2**64), not all zero (a fixed point that never ends)."""
    if not isinstance(value, (list, tuple)) or len(value) != RNG_WORDS or not all(_is_u64(w) for w in value):
        raise StateError(f"{where}: expected {RNG_WORDS} ints in [0, 2**64), got {value!r}")
    if not any(value):
        raise StateError(f"{where}: all words are zero (the generator would never produce a draw)")


def _class_entry(entry: object, where: str) -> tuple[int, int, list[int]]:
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise StateError(f"{where}: expected (label, seen, members), got {entry!r}")
    label, seen, slots = entry
    if not _is_int(label) or not 0 <= label < 2**63:
        raise StateError(f"{where}: label must be an int >= 0, got {label!r}")
    if not _is_u64(seen):
        raise StateError(f"{where}: seen must be an int in [0, 2**64), got {seen!r}")
    if not isinstance(slots, (list, tuple)) or not all(_is_int(s) and 0 <= s < 2**32 for s in slots):
        raise StateError(f"{where}: members must be a list of slot indices")
    return label, seen, list(slots)


def _policy_for_core(policy: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "classes": [tuple(c) for c in policy["classes"]],
        "insert_rng": list(policy["insert_rng"]),
        "sample_rng": list(policy["sample_rng"]),
        "saturated": bool(policy.get("saturated", False)),
        **({"pass": tuple(policy["pass"])} if "pass" in policy else {}),
    }


def _mapping(value: object, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StateError(f"{where}: expected a dict, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise StateError(f"{where}: missing {missing}")
    return value


def _tensor(value: object, where: str, dtype: torch.dtype, shape: tuple[int, ...] | None) -> int:
    if not isinstance(value, torch.Tensor):
        raise StateError(f"{where}: expected a tensor, got {type(value).__name__}")
    if value.dtype != dtype or not value.is_cpu or not value.is_contiguous():
        raise StateError(
            f"{where}: expected a contiguous CPU {dtype} tensor, got {value.dtype} on {value.device}"
        )
    if shape is None:
        if value.dim() != 1:
            raise StateError(f"{where}: expected a 1-D tensor, got shape {tuple(value.shape)}")
    elif tuple(value.shape) != shape:
        raise StateError(f"{where}: expected shape {shape}, got {tuple(value.shape)}")
    return int(value.shape[0])


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_u64(v: object) -> bool:
    return _is_int(v) and 0 <= v < 2**64  # type: ignore[operator]
