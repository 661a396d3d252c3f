"""Structure-aware fuzzing of the checkpoint loader (fixed seed, bounded): a valid rank file
and manifest get one random value replaced, a key removed or a list entry repeated; every
load must either succeed with a consistent buffer or raise CheckpointError, never another
exception, a crash or a hang. The C++ restore path has its own libFuzzer target."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from reverie import DistributedRehearsalBuffer
from reverie.checkpoint import CheckpointError

CASES = 160
ODD_VALUES: list[Any] = [
    0,
    -1,
    2**64,
    3.5,
    float("nan"),
    "x",
    None,
    True,
    [],
    [0, 0, 0, 0],
    {"a": 1},
    torch.zeros(3, dtype=torch.int32),
    torch.ones(2, 3),
]


def leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside nested dicts, lists and tuples (containers included)."""
    out = [path] if path else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += leaves(v, (*path, k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += leaves(v, (*path, i))
    return out


def mutate(obj: Any, rng: random.Random) -> Any:
    path = rng.choice(leaves(obj))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if isinstance(parent, tuple):  # class entries are tuples: rebuild the entry as a list
        return mutate_tuple_parent(obj, path, rng)
    value = parent[key]
    if rng.random() < 0.5 and isinstance(value, (int, torch.Tensor)) and not isinstance(value, bool):
        parent[key] = nudge(value, rng)  # same type and shape, another value
        return obj
    action = rng.randrange(3)
    if action == 0 or not isinstance(parent, (dict, list)):
        parent[key] = rng.choice(ODD_VALUES)
    elif action == 1:
        del parent[key]
    elif isinstance(parent, list):
        parent.insert(key, parent[key])
    else:
        parent[key] = [parent[key], parent[key]]
    return obj


def nudge(value: int | torch.Tensor, rng: random.Random) -> int | torch.Tensor:
    if isinstance(value, int):
        return rng.choice([0, 1, value + 1, value - 1, 2**63 - 1])
    out = value.clone()
    if out.numel():
        flat = out.view(-1)
        i = rng.randrange(flat.numel())
        flat[i] = (
            rng.choice([-1, 0, 2, 5]) if out.dtype == torch.int64 else rng.choice([-1.0, 2.0, float("nan")])
        )
    return out


def mutate_tuple_parent(obj: Any, path: tuple, rng: random.Random) -> Any:
    holder = obj
    for key in path[:-2]:
        holder = holder[key]
    entry = list(holder[path[-2]])
    entry[path[-1]] = rng.choice(ODD_VALUES)
    holder[path[-2]] = tuple(entry)
    return obj


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    path = tmp_path_factory.mktemp("valid") / "ckpt"
    with DistributedRehearsalBuffer(24, {"x": ((3,), torch.float32)}, num_classes=4, seed=2) as d:
        y = torch.arange(18) % 4
        d.add(torch.stack([y.float()] * 3, 1), y, torch.rand(18))
        d.save(path)
    state = torch.load(path / "rank-0.pt", weights_only=True)
    return json.loads((path / "manifest.json").read_text()), state


def write(path: Path, manifest: dict, state: dict) -> None:
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps(manifest, default=str))
    torch.save(state, path / "rank-0.pt")


def test_mutated_checkpoints_load_consistently_or_are_refused(tmp_path: Path, valid) -> None:
    rng = random.Random(20261205)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(CASES):
        manifest, state = json.loads(json.dumps(valid[0])), _copy(valid[1])
        if case % 4 == 0:
            manifest = mutate(manifest, rng)
        else:
            state = mutate(state, rng)
        path = tmp_path / f"case-{case}"
        write(path, manifest, state)
        try:
            buf = DistributedRehearsalBuffer.load(path, timeout=5)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        with buf:
            assert len(buf) == sum(buf.class_counts().values()), case
            draw = buf.get_remote_samples(8).wait()
            assert len(draw) == min(8, len(buf)) and bool((draw.labels < 4).all()), case
        outcomes["loaded"] += 1
    assert outcomes["refused"] > CASES // 4 and outcomes["loaded"] > CASES // 10, outcomes


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_copy(v) for v in obj)
    return obj.clone() if isinstance(obj, torch.Tensor) else obj
