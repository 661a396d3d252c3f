"""Checkpoint and restore: local state_dict, distributed save/load, different rank counts."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import mpi_launch
import pytest
import torch

from reverie import DistributedRehearsalBuffer, RehearsalBuffer

WORKER = Path(__file__).with_name("checkpoint_worker.py")


def run_ranks(n: int, *args: str) -> list[dict]:
    return mpi_launch.run_ranks(WORKER, n, *args)


def test_local_state_dict_through_torch_save() -> None:
    a = RehearsalBuffer(30, {"x": ((2,), torch.float16)}, num_classes=3, candidates=4, seed=5)
    for i in range(20):
        y = torch.arange(8) % 3
        a.add(torch.full((8, 2), float(i), dtype=torch.float16), y)
    blob = io.BytesIO()
    torch.save({"buffer": a.state_dict(), "epoch": 3}, blob)
    blob.seek(0)
    b = RehearsalBuffer(30, {"x": ((2,), torch.float16)}, num_classes=3, candidates=4, seed=99)
    b.load_state_dict(torch.load(blob, weights_only=True)["buffer"])
    for i in range(5):  # same future inserts and draws
        y = torch.arange(8) % 3
        x = torch.full((8, 2), 100.0 + i, dtype=torch.float16)
        assert a.add(x, y) == b.add(x, y)
        sa, sb = a.sample(7), b.sample(7)
        assert torch.equal(sa["x"], sb["x"]) and torch.equal(sa.labels, sb.labels)


def test_local_state_dict_rejects_other_layouts() -> None:
    a = RehearsalBuffer(30, {"x": ((2,), torch.float32)}, num_classes=3)
    b = RehearsalBuffer(31, {"x": ((2,), torch.float32)}, num_classes=3)
    with pytest.raises(ValueError, match="capacity"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_restore_gives_same_draws(tmp_path: Path, ranks: int, engine: str) -> None:
    mpi_launch.require_engine(engine)
    results = run_ranks(ranks, "exact", str(tmp_path / "ckpt"), engine)
    assert all(r["same_draws"] and r["draws"] == 20 for r in results), results
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        ["manifest.json", *[f"rank-{i}.pt" for i in range(ranks)]]
    )


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
@pytest.mark.parametrize(("before", "after"), [(4, 2), (2, 4)])
def test_restore_on_other_rank_count_redistributes(
    tmp_path: Path, before: int, after: int, engine: str
) -> None:
    mpi_launch.require_engine(engine)
    saved = run_ranks(before, "save", str(tmp_path / "ckpt"), engine)
    loaded = run_ranks(after, "reload", str(tmp_path / "ckpt"), engine)
    per_class_before = {}
    for r in saved:
        for label, n in r["classes"].items():
            per_class_before[label] = per_class_before.get(label, 0) + n
    per_class_after = {}
    for r in loaded:
        assert r["consistent"]
        counts = list(r["classes"].values())
        assert max(counts) - min(counts) <= 2, r["classes"]  # class balance kept on every rank
        for label, n in r["classes"].items():
            per_class_after[label] = per_class_after.get(label, 0) + n
    quota = 60 // 6
    for label, n in per_class_before.items():  # nothing lost beyond what the new quotas allow
        assert per_class_after[label] == min(n, quota * after)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    with DistributedRehearsalBuffer(20, {"x": ((2,), torch.float32)}, seed=1) as d:
        d.add(torch.ones(10, 2), torch.zeros(10, dtype=torch.int64))
        d.save(path)
        # A crash after the new files were written but before the swap: .partial is left behind.
        d.add(torch.ones(10, 2), torch.ones(10, dtype=torch.int64))
        partial = tmp_path / "ckpt.partial"
        shutil.copytree(path, partial)
        (partial / "rank-0.pt").write_bytes(b"torn")
    with DistributedRehearsalBuffer.load(path) as restored:
        assert len(restored) == 10 and restored.class_counts() == {0: 10}
    # A crash in the middle of the swap: only the previous checkpoint, renamed to .old, exists.
    path.rename(tmp_path / "ckpt.old")
    with DistributedRehearsalBuffer.load(path) as restored:
        assert len(restored) == 10
