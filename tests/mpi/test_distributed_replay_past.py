"""``replay="past"`` on 2 real ranks, both engines: no draw returns a current-task row before
the task boundary, and draws are uniform over the union of the ranks' committed samples
(fixed seeds; chi-square, alpha = 0.001)."""

from __future__ import annotations

from pathlib import Path

import mpi_launch
import pytest
from draw_checks import check_owner_shares
from scipy.stats import chisquare

WORKER = Path(__file__).with_name("replay_past_worker.py")
P_MIN = 1e-3


@pytest.mark.parametrize("draws", ["independent", "passes"])
@pytest.mark.parametrize("engine", ["mpi", "thallium"])
def test_past_replays_committed_samples_only_and_uniformly(engine: str, draws: str) -> None:
    mpi_launch.require_engine(engine)
    results = mpi_launch.run_ranks(WORKER, 2, "--engine", engine, "--draws", draws, timeout=120)
    sizes = results[0]["sizes"]
    assert sizes == [60, 12], sizes  # every task-0 row fits: rank 0 holds 5x rank 1
    total = sum(sizes)
    pooled = [[0] * s for s in sizes]
    for res in results:
        rank = res["rank"]
        assert res["drawn_before_boundary"] == 0, f"rank {rank} drew staged rows before the boundary"
        assert res["staged"] == res["committed"] == sizes[rank]
        assert res["current_task_drawn"] == 0, f"rank {rank} drew current-task rows: {res}"
        assert res["short"] == 0 and res["known_global"] == total
        check_owner_shares(rank, res, sizes, pooled, P_MIN)
        assert res["current_task_drawn_after_boundary"] > 0, "after end_task the task is replayed"
        if draws == "passes":  # 72 committed rows, r = 16: a pass is 4 draws (64 distinct rows)
            for first in range(0, 40, 4):
                ids = [i for draw in res["first_draws"][first : first + 4] for i in draw]
                assert len(set(ids)) == 64, (
                    f"rank {rank}: a row twice in the pass of draws {first}-{first + 3}"
                )
    flat = [c for slots in pooled for c in slots]
    assert min(flat) > 0
    p = chisquare(flat).pvalue
    assert p > P_MIN, f"slot counts over the union of committed samples not uniform (p={p:.2g})"


@pytest.mark.parametrize("after", [2, 1])
def test_checkpoint_carries_the_staged_rows(tmp_path: Path, after: int) -> None:
    """Saved on 2 ranks with task 1 staged; loaded on 2 ranks (bit-exact) or 1 (dealt again):
    the staged rows are still staged (not drawable), and end_task commits them."""
    mpi_launch.require_engine("mpi")
    path = str(tmp_path / "ckpt")
    saved = mpi_launch.run_ranks(WORKER, 2, "--engine", "mpi", "--save", path, timeout=120)
    assert [(r["size"], r["staged"]) for r in saved] == [(8, 10), (8, 11)]
    loaded = mpi_launch.run_ranks(WORKER, after, "--engine", "mpi", "--reload", path, timeout=120)
    assert sum(r["size"] for r in loaded) == 16 and sum(r["staged"] for r in loaded) == 21
    for r in loaded:
        assert r["replay"] == "past" and r["current_task_drawn"] == 0, r
        assert r["committed"] == r["staged"] and r["size_after"] == r["size"] + r["staged"]
