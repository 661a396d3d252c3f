"""Checkpoints of local and distributed buffers.

A distributed checkpoint is a directory: ``manifest.json`` plus one ``rank-<i>.pt`` per
rank (torch.save). It is written into ``<path>.partial`` and swapped in only when every
rank has written its file, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reverie.schema import Schema

if TYPE_CHECKING:
    from reverie.distributed import DistributedRehearsalBuffer

FORMAT_VERSION = 1


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


def restore_local(schema: Schema, core: Any, state: Mapping[str, Any]) -> None:
    """Writes a ``local_state`` back into a buffer of the same layout and quotas."""
    samples = state["samples"]
    ptrs, n, _alive = schema.batch_pointers(samples["fields"], samples["labels"], samples["weights"])
    core.restore(state["policy"], ptrs, n)


def save_distributed(dbuf: DistributedRehearsalBuffer, path: str | os.PathLike[str]) -> Path:
    """Collective: applies pending adds, waits for draws in flight, writes the checkpoint."""
    final = Path(path)
    partial = final.with_name(final.name + ".partial")
    boot = dbuf.bootstrap
    if boot.rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    boot.allgather(None)
    engine = dbuf._engine_or_raise()
    state = {"engine": engine.snapshot(), **local_state(dbuf.schema, dbuf._buffer)}
    _atomic_torch_save(state, partial / f"rank-{boot.rank}.pt")
    sizes = boot.allgather(len(dbuf))
    if boot.rank == 0:
        manifest = {"version": FORMAT_VERSION, "world_size": boot.size, "sizes": sizes, **_config(dbuf)}
        _atomic_write(partial / "manifest.json", json.dumps(manifest, indent=2).encode())
        _swap_in(partial, final)
    boot.allgather(None)
    return final


def read_manifest(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory to read (the previous one if a swap was interrupted) and its manifest."""
    final = Path(path)
    for candidate in (final, final.with_name(final.name + ".old")):
        if (candidate / "manifest.json").is_file():
            manifest = json.loads((candidate / "manifest.json").read_text())
            if manifest.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"path: checkpoint format {manifest.get('version')!r}, expected {FORMAT_VERSION}"
                )
            return candidate, manifest
    raise FileNotFoundError(f"path: no Reverie checkpoint (manifest.json) in {final}")


def fields_from_manifest(manifest: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {
        name: (tuple(shape), getattr(torch, dtype)) for name, (shape, dtype) in manifest["fields"].items()
    }


def load_rank_file(directory: Path, rank: int) -> dict[str, Any]:
    return torch.load(directory / f"rank-{rank}.pt", weights_only=False)


def redistribute(
    states: list[dict[str, Any]],
    schema: Schema,
    rank: int,
    world: int,
    capacity: int,
    num_classes: int | None,
) -> dict[str, Any]:
    """This rank's share of an old job's samples: each class is dealt round-robin over the
    new ranks (class balance kept), trimmed to this rank's quota; reservoir counters are
    split evenly so later candidates keep the right acceptance probability."""
    per_label: dict[int, list[tuple[int, int]]] = {}
    seen: dict[int, int] = {}
    for f, state in enumerate(states):
        for label, label_seen, members in state["policy"]["classes"]:
            per_label.setdefault(label, []).extend((f, slot) for slot in members)
            seen[label] = seen.get(label, 0) + label_seen
    labels = sorted(per_label)
    if num_classes is not None:
        labels = list(range(num_classes))
    quota = capacity // max(1, num_classes if num_classes is not None else len(labels))
    picks: list[tuple[int, int]] = []
    classes = []
    for label in labels:
        mine = per_label.get(label, [])[rank::world][:quota]
        members = list(range(len(picks), len(picks) + len(mine)))
        picks.extend(mine)
        share = -(-seen.get(label, 0) // world)
        classes.append((label, max(share, len(mine)), members))
    rows = schema.allocate(len(picks))
    for i, (f, slot) in enumerate(picks):
        src = states[f]["samples"]
        for name in schema.names:
            rows[name][i] = src["fields"][name][slot]
        rows.labels[i] = src["labels"][slot]
        rows.weights[i] = src["weights"][slot]
    return {
        "samples": {"fields": dict(rows), "labels": rows.labels, "weights": rows.weights},
        "classes": classes,
    }


def _config(dbuf: DistributedRehearsalBuffer) -> dict[str, Any]:
    return {
        "capacity": dbuf.capacity,
        "fields": {f.name: [list(f.shape), str(f.dtype).removeprefix("torch.")] for f in dbuf.schema.fields},
        "num_classes": dbuf.num_classes,
        "candidates": dbuf.candidates,
        "seed": dbuf.seed,
        "max_representatives": dbuf.max_representatives,
    }


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _swap_in(partial: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
