"""A request that timed out must not corrupt later draws when its owner answers late."""

from __future__ import annotations

from pathlib import Path

import mpi_launch
import pytest

WORKER = Path(__file__).with_name("late_push_worker.py")


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
def test_late_answer_to_a_timed_out_request_corrupts_nothing(engine: str) -> None:
    mpi_launch.require_engine(engine)
    # The ranks leave without MPI_Finalize (rank 0 gave up on rank 1), which Open MPI's
    # launcher counts as a failed job unless told otherwise.
    results = mpi_launch.run_ranks(
        WORKER, 3, engine, timeout=120, mpiexec_args=tuple(mpi_launch.lost_rank_args())
    )
    r = results[0]
    assert r["excluded"] == [1], r
    assert results[1]["answered_after_resume"] >= 1, results  # the stale request was answered
    assert all(r["intact"]) and all(r["unchanged"]), r
    assert r["from_victim_after_stop"] == 0, r
