"""Checkpoints written by someone else: a file that carries code, states whose fields
disagree with each other, a save onto a path that is not a checkpoint, a torn current
checkpoint. Each is refused with an error naming the file and field, and changes nothing."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from reverie import DistributedRehearsalBuffer, RehearsalBuffer
from reverie.checkpoint import CheckpointError

FIELDS = {"x": ((3,), torch.float32)}


def filled(path: Path, num_classes: int | None = 6, n: int = 30) -> None:
    """A one-rank checkpoint of n samples, labels 0..5, at path."""
    with DistributedRehearsalBuffer(60, FIELDS, num_classes=num_classes, seed=3) as d:
        y = torch.arange(n) % 6
        d.add(torch.stack([y.float()] * 3, 1), y)
        d.save(path)


def edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_rank_file(path: Path, change) -> None:
    file = path / "rank-0.pt"
    state = torch.load(file, weights_only=True)
    change(state)
    torch.save(state, file)


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickled_call_in_a_rank_file_does_not_run(tmp_path: Path) -> None:
    path, marker = tmp_path / "ckpt", tmp_path / "pwned"
    filled(path)
    torch.save({"samples": _RunsACommand(f"touch {marker}")}, path / "rank-0.pt")
    with pytest.raises(CheckpointError, match=r"rank-0\.pt: refused or unreadable"):
        DistributedRehearsalBuffer.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(world_size=0), "world_size"),
        (lambda m: m.update(world_size=2, sizes=[30, 0]), "engine.sizes: expected 2"),
        (lambda m: m.update(sizes=[29]), "manifest says 29"),
        (lambda m: m.update(num_classes=3), "labels outside"),
        (lambda m: m.update(fields={"x": [[3], "load"]}), r"fields\['x'\]"),
        (lambda m: m.update(capacity=10), "capacity"),
        (lambda m: m.update(version=99), "version"),
    ],
)
def test_manifest_fields_checked_against_each_other(tmp_path: Path, change, message: str) -> None:
    path = tmp_path / "ckpt"
    filled(path)
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        DistributedRehearsalBuffer.load(path)


@pytest.mark.parametrize("rng", ["draw_rng", "select_rng", "insert_rng", "sample_rng"])
def test_all_zero_generator_state_is_refused(tmp_path: Path, rng: str) -> None:
    path = tmp_path / "ckpt"
    filled(path)
    part = "engine" if rng in ("draw_rng", "select_rng") else "policy"
    edit_rank_file(path, lambda s: s[part].__setitem__(rng, [0, 0, 0, 0]))
    with pytest.raises(CheckpointError, match=f"{rng}: all words are zero"):
        DistributedRehearsalBuffer.load(path)


def relabel_fixed_classes(state: dict) -> None:  # num_classes=6 state with labels 100-105
    state["policy"]["classes"] = [(c[0] + 100, c[1], c[2]) for c in state["policy"]["classes"]]
    state["samples"]["labels"] += 100


def test_fixed_quota_state_with_foreign_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    filled(path)
    edit_rank_file(path, relabel_fixed_classes)
    with pytest.raises(CheckpointError, match="labels outside"):
        DistributedRehearsalBuffer.load(path)


def local_buffer(num_classes: int | None) -> RehearsalBuffer:
    buf = RehearsalBuffer(12, FIELDS, num_classes=num_classes, seed=1)
    y = torch.tensor([0, 1, 2, 0, 1])
    buf.add(torch.stack([y.float()] * 3, 1), y)
    return buf


def duplicate_label(state: dict) -> None:
    classes = state["policy"]["classes"]
    state["policy"]["classes"] = [(0, c[1], c[2]) for c in classes]  # every class claims label 0
    state["samples"]["labels"].zero_()


@pytest.mark.parametrize(
    ("num_classes", "change", "message"),
    [
        (3, relabel_fixed_classes, "expected label 0"),
        (None, duplicate_label, "label appears twice"),
        (None, lambda s: s["policy"]["classes"][0][2].append(0), "member slots for"),
        (3, lambda s: s["policy"]["classes"].append((3, 0, [])), "class count 4 does not match"),
        (None, lambda s: s["policy"].__setitem__("sample_rng", [0, 0, 0, 0]), "sample_rng: all words"),
        (None, lambda s: s["samples"]["weights"].fill_(-1.0), "weights"),
        (None, lambda s: s["samples"].__setitem__("labels", s["samples"]["labels"].int()), "labels"),
    ],
)
def test_inconsistent_local_state_changes_nothing(num_classes, change, message: str) -> None:
    source = local_buffer(num_classes)
    state = source.state_dict()
    state["policy"]["classes"] = [(c[0], c[1], list(c[2])) for c in state["policy"]["classes"]]
    change(state)
    target = RehearsalBuffer(12, FIELDS, num_classes=num_classes, seed=9)
    y = torch.tensor([1, 1])
    target.add(torch.ones(2, 3), y)
    before = target.state_dict()
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(state)
    after = target.state_dict()
    assert after["policy"] == before["policy"] and torch.equal(after["samples"]["labels"], y)


def test_save_onto_a_regular_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    with DistributedRehearsalBuffer(20, FIELDS) as d:
        d.add(torch.ones(4, 3), torch.zeros(4, dtype=torch.int64))
        with pytest.raises(FileExistsError, match="not a Reverie checkpoint"):
            d.save(target)
    assert target.read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_torn_current_checkpoint_falls_back_to_old(tmp_path: Path) -> None:
    path, old = tmp_path / "ckpt", tmp_path / "ckpt.old"
    filled(tmp_path / "previous", n=12)
    filled(path, n=30)
    os.replace(tmp_path / "previous", old)  # a swap cut short: the previous one is still .old
    (path / "rank-0.pt").write_bytes((path / "rank-0.pt").read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="rank-0.pt: refused or unreadable"):
        restored = DistributedRehearsalBuffer.load(path)
    with restored:
        assert len(restored) == 12
    (old / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*rank-0\.pt.*ckpt\.old"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            DistributedRehearsalBuffer.load(path)


def test_missing_rank_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    filled(path)
    (path / "rank-0.pt").unlink()
    with pytest.raises(CheckpointError, match=r"rank-0\.pt: missing"):
        DistributedRehearsalBuffer.load(path)


def test_override_that_would_drop_classes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    filled(path)
    with pytest.raises(ValueError, match="num_classes=3 would drop"):
        DistributedRehearsalBuffer.load(path, num_classes=3)
    with pytest.raises(TypeError, match="unexpected arguments"):
        DistributedRehearsalBuffer.load(path, capcity=10)
