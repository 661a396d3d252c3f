"""Checkpoints of distributed buffers: files, manifest, validation, redistribution.

A checkpoint is a directory: ``manifest.json`` plus one ``rank-<i>.pt`` per rank. It is
written into ``<path>.partial`` and swapped in only when every rank has written its file;
during the swap the previous checkpoint is ``<path>.old`` for a moment.

Trust: rank files are read with ``torch.load(weights_only=True)``, which rebuilds tensors
and plain containers and refuses anything else (a pickled call is an error, not code that
runs). Every value is then checked against the manifest and against the others before a
buffer changes. See docs/security.md.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from reverie.bootstrap import Bootstrap
from reverie.buffer import check_buffer_args
from reverie.schema import Schema
from reverie.staging import DRAW_MODES, REPLAY_MODES, check_stage_state
from reverie.state import StateError, check_consistency, check_local_state, check_pass, check_rng

FORMAT_VERSION = 1
CONFIG_KEYS = ("capacity", "num_classes", "candidates", "seed", "max_representatives")
#: Optional in the manifest (checkpoints written before it are ``"online"``); not overridable:
#: the staged rows of a ``"past"`` buffer would be lost, an ``"online"`` one has none.
REPLAY_KEY = "replay"
#: Optional too (before it: ``"independent"``); a load may not change it either.
DRAWS_KEY = "draws"


class CheckpointError(StateError):
    """A checkpoint that cannot be loaded as it is (names the file and the field)."""


# -- writing ------------------------------------------------------------------------------
def save_distributed(
    boot: Bootstrap,
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    take_state: Callable[[], dict[str, Any]],
) -> Path:
    """Collective: every rank writes ``take_state()``, rank 0 the manifest, then the swap.
    A failure on any rank raises on every rank (the failing one raises its own error) and
    leaves the previous checkpoint in place. An existing ``path`` that is not a checkpoint
    is refused, never renamed or replaced."""
    final = Path(path)
    partial = final.with_name(final.name + ".partial")
    boot.step(lambda: _prepare(final, partial, boot.rank == 0), "save")
    sizes: list[int] = []

    def write_rank_file() -> None:
        state = take_state()
        sizes.append(int(state["samples"]["labels"].shape[0]))
        _atomic_torch_save(state, partial / f"rank-{boot.rank}.pt")

    boot.step(write_rank_file, "save")
    all_sizes = boot.allgather(sizes[0], "save")
    manifest = {"version": FORMAT_VERSION, "world_size": boot.size, "sizes": all_sizes, **config}
    boot.step(lambda: _finish(partial, final, manifest) if boot.rank == 0 else None, "save")
    return final


def _prepare(final: Path, partial: Path, is_root: bool) -> None:
    if final.exists() and not (final / "manifest.json").is_file():
        raise FileExistsError(
            f"path: {final} exists and is not a Reverie checkpoint (no manifest.json); refusing to replace it"
        )
    if is_root:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)


def _finish(partial: Path, final: Path, manifest: dict[str, Any]) -> None:
    _atomic_write(partial / "manifest.json", json.dumps(manifest, indent=2).encode())
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------
def read_checkpoint(
    boot: Bootstrap, path: str | os.PathLike[str], world_size: int, rank: int
) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Collective: the checkpoint directory, its manifest and the rank files this rank needs
    (its own on the same rank count, else all), each checked. When ``path`` is missing or
    fails a check on any rank, every rank falls back to ``path.old`` (a swap that was cut
    short) with a warning; CheckpointError on every rank when neither is usable."""
    final = Path(path)
    problems = []
    for directory in (final, final.with_name(final.name + ".old")):
        try:
            manifest, states = _read_directory(directory, world_size, rank)
            error = None
        except (StateError, OSError) as exc:
            error = str(exc)
        errors = boot.allgather(error, "load")
        if not any(errors):
            if directory != final:
                warnings.warn(
                    f"load: {final} is not usable ({problems[0]}); loaded {directory}, the checkpoint "
                    "kept while a save was being swapped in",
                    RuntimeWarning,
                    3,
                )
            return directory, manifest, states
        problems.append("; ".join(f"rank {r}: {e}" for r, e in enumerate(errors) if e))
    raise CheckpointError(
        f"path: no usable checkpoint at {final}: {problems[0]} (and {final}.old: {problems[1]})"
    )


def _read_directory(
    directory: Path, world_size: int, rank: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest = read_manifest(directory)
    schema = Schema(fields_from_manifest(manifest))
    ranks = [rank] if manifest["world_size"] == world_size else range(manifest["world_size"])
    states = [check_rank_state(load_rank_file(directory, r), manifest, schema, directory, r) for r in ranks]
    return manifest, states


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of one checkpoint directory, every field checked."""
    file = directory / "manifest.json"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a Reverie checkpoint)")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable ({exc})") from None
    check_manifest(manifest, file)
    return manifest


def check_manifest(manifest: object, file: Path) -> None:
    """Every manifest field, and each against the others; CheckpointError naming the field."""
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: version: checkpoint format {manifest.get('version')!r}, expected {FORMAT_VERSION}"
        )
    missing = [k for k in ("world_size", "sizes", "fields", *CONFIG_KEYS) if k not in manifest]
    if missing:
        raise CheckpointError(f"{file}: missing {missing}")
    world, sizes = manifest["world_size"], manifest["sizes"]
    if not _is_int(world) or world < 1:
        raise CheckpointError(f"{file}: world_size: expected an int >= 1, got {world!r}")
    if not isinstance(sizes, list) or len(sizes) != world or not all(_is_int(n) and n >= 0 for n in sizes):
        raise CheckpointError(f"{file}: sizes: expected {world} ints >= 0 (one per rank), got {sizes!r}")
    try:
        check_buffer_args(
            manifest["capacity"], manifest["num_classes"], manifest["candidates"], manifest["seed"]
        )
        Schema(fields_from_manifest(manifest))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    if any(n > manifest["capacity"] for n in sizes):
        raise CheckpointError(f"{file}: sizes: a rank holds more than capacity {manifest['capacity']}")
    r = manifest["max_representatives"]
    if not _is_int(r) or not 1 <= r <= 4096:
        raise CheckpointError(f"{file}: max_representatives: expected an int in [1, 4096], got {r!r}")
    replay = manifest.get(REPLAY_KEY, "online")
    if replay not in REPLAY_MODES:
        raise CheckpointError(f"{file}: replay: expected one of {REPLAY_MODES}, got {replay!r}")
    draws = manifest.get(DRAWS_KEY, "independent")
    if draws not in DRAW_MODES:
        raise CheckpointError(f"{file}: draws: expected one of {DRAW_MODES}, got {draws!r}")


def fields_from_manifest(manifest: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    fields = manifest["fields"]
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f"fields: expected a non-empty object name -> [shape, dtype], got {fields!r}")
    out = {}
    for name, spec in fields.items():
        ok = (
            isinstance(spec, list)
            and len(spec) == 2
            and isinstance(spec[0], list)
            and isinstance(spec[1], str)
        )
        dtype = getattr(torch, spec[1], None) if ok else None
        if not isinstance(dtype, torch.dtype) or not all(_is_int(d) for d in spec[0]):
            raise ValueError(f"fields[{name!r}]: expected [shape, dtype name], got {spec!r}")
        out[name] = (tuple(spec[0]), dtype)
    return out


def load_rank_file(directory: Path, rank: int) -> Any:
    """A rank file, read with ``weights_only=True``: tensors and plain containers only."""
    file = directory / f"rank-{rank}.pt"
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except Exception as exc:  # torch raises many kinds for hostile or torn files
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{file}: refused or unreadable ({type(exc).__name__}: {reason})") from None


def check_rank_state(
    state: Any, manifest: Mapping[str, Any], schema: Schema, directory: Path, rank: int
) -> Any:
    """One rank file against the manifest: local state, engine state, sample count."""
    where = str(directory / f"rank-{rank}.pt")
    check_local_state(state, schema, manifest["capacity"], where)
    n = int(state["samples"]["labels"].shape[0])
    if n != manifest["sizes"][rank]:
        raise CheckpointError(f"{where}: holds {n} samples, the manifest says {manifest['sizes'][rank]}")
    labels = state["samples"]["labels"]
    k = manifest["num_classes"]
    if k is not None and n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise CheckpointError(f"{where}: labels outside [0, num_classes={k}) of the manifest")
    check_consistency(state, manifest["capacity"], k, where)
    engine = state.get("engine")
    if not isinstance(engine, Mapping) or not {"select_rng", "draw_rng", "sizes"} <= set(engine):
        raise CheckpointError(f"{where}: engine: expected select_rng, draw_rng and sizes")
    for key in ("select_rng", "draw_rng"):
        check_rng(engine[key], f"{where}: engine.{key}")
    sizes = engine["sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) != manifest["world_size"]
        or not all(_is_int(s) and s >= 0 for s in sizes)
    ):
        raise CheckpointError(f"{where}: engine.sizes: expected {manifest['world_size']} ints >= 0")
    if "pass" in engine:
        check_pass(engine["pass"], f"{where}: engine.pass")
    if manifest.get(REPLAY_KEY, "online") == "past":
        check_stage_state(state.get("stage"), schema, manifest["capacity"], k, f"{where}: stage")
    elif "stage" in state:
        raise CheckpointError(f"{where}: stage: staged rows in a checkpoint of a replay='online' buffer")
    return state


def check_overrides(overrides: Mapping[str, Any], states: list[dict[str, Any]]) -> None:
    """Overrides of saved constructor arguments that would drop or misfile stored samples."""
    unknown = sorted(set(overrides) - set(CONFIG_KEYS))
    if unknown:
        raise TypeError(f"load: unexpected arguments {unknown}; overridable: {list(CONFIG_KEYS)}")
    k = overrides.get("num_classes")
    if "num_classes" in overrides and k is not None:
        top = max(
            (int(s["samples"]["labels"].max()) for s in states if len(s["samples"]["labels"])), default=-1
        )
        if top >= k:
            raise ValueError(
                f"num_classes: the checkpoint holds label {top}, so num_classes={k} would drop samples"
            )


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


# -- helpers ------------------------------------------------------------------------------
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


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
