"""A peer that dies or stops answering: the survivors time out, exclude it, keep training,
and close promptly. The peer really crashes (exits abruptly with its threads running) or
really stops (SIGSTOP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpi_launch
import pytest
from proc_state import DEAD, wait_for_state

WORKER = Path(__file__).with_name("fault_worker.py")
TIMEOUT = 3.0
SHM = Path("/dev/shm")
SHM_FILES = "mpich_shm_*" if not mpi_launch.OPEN_MPI else "sm_segment.*"  # the MPI's intra-node files


def wait_for_results(out_dir: Path, proc: subprocess.Popen, timeout: float) -> dict[int, dict]:
    """The ranks' result files (fault_worker.py writes each whole, by a rename) once all four
    are there, or what is there when the job ended or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        results = {int(f.stem[4:]): json.loads(f.read_text()) for f in out_dir.glob("rank*.json")}
        if len(results) == 4 or proc.poll() is not None or time.monotonic() > deadline:
            return results
        time.sleep(0.05)  # polling files the ranks write; bounded by the deadline


def run_fault_job(
    fault: str, engine: str, tmp_path: Path, meanwhile: Callable[[dict[int, dict]], Any] = lambda _: None
) -> tuple[dict[int, dict], str, Any]:
    """Runs fault_worker.py FAULT ENGINE on 4 ranks and returns the ranks' results, the job's
    stderr (the launcher's, then each rank's) and what `meanwhile(results)` returned, called
    once the results are in and before a stopped victim is killed."""
    cmd = [mpi_launch.MPIEXEC, *mpi_launch.lost_rank_args(), "-n", "4", sys.executable, str(WORKER)]
    # Output goes to files, never a pipe nobody reads while the job runs. The results come
    # from the ranks' own files: Open MPI's launcher, once a rank failed, may drop the
    # survivors' stdout.
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([*cmd, fault, engine, str(tmp_path)], stdout=out, stderr=err, text=True)
        try:
            # mpiexec stays up while the victim is stopped: results first, then kill it.
            results = wait_for_results(tmp_path, proc, timeout=120)
            got = meanwhile(results)
            victim = results.get(3, {})
            if fault != "crash" and "pid" in victim:
                # Survivors first: the launcher ends whoever is still running once the victim
                # dies, and a survivor between its result and its exit would lose its last line.
                for rank, r in results.items():
                    if rank != 3 and "pid" in r:
                        wait_for_state(r["pid"], DEAD, timeout=30)
                os.kill(victim["pid"], signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = "".join(f.read_text() for f in [tmp_path / "stderr", *sorted(tmp_path.glob("rank*.err"))])
    return results, stderr, got


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
@pytest.mark.parametrize("fault", ["crash", "stop"])
def test_survivors_exclude_dead_peer_and_close(fault: str, engine: str, tmp_path: Path) -> None:
    mpi_launch.require_engine(engine)
    shm_before = set(SHM.glob(SHM_FILES))
    results, stderr, _ = run_fault_job(fault, engine, tmp_path)
    assert sorted(results) == [0, 1, 2, 3], (results, stderr)
    assert results[3]["victim"]
    for rank in (0, 1, 2):
        r = results[rank]
        assert r["intact_draws"] == 30, r
        assert r["excluded"] == [3], r
        assert r["from_victim_after_exclusion"] == 0, r
        assert r["draws_after_exclusion"] >= 20, r  # the victim was found out early
        assert r["slowest_draw_s"] < 4 * TIMEOUT, r
        assert r["close_s"] < 2 * TIMEOUT, r
    assert "peer 3" in stderr and "excluding it" in stderr
    # The survivors returned normally and still ended (MPI_Finalize would wait for rank 3).
    assert stderr.count("stopped answering during this run; exiting with status 0 without MPI_Finalize") == 3
    # ... and unlinked the job's MPI files on the way out (rank 3 could not): no new file is
    # left that no live process maps (another job on the machine may have live ones).
    from reverie.shm_cleanup import stale_files

    left, _ = stale_files(SHM, SHM_FILES, min_age=0.0)
    assert set(left) - shm_before == set()


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
def test_close_without_a_stalled_peer_gives_up_and_ends(engine: str, tmp_path: Path) -> None:
    """Rank 3 draws to the end like the others, then stops (SIGSTOP) instead of closing: no
    draw ever missed it, so only close() finds it gone. The survivors' close gives up after
    the timeout, warns, and the ranks end without MPI_Finalize (which would wait for it)."""
    mpi_launch.require_engine(engine)

    def survivors_ended(results: dict[int, dict]) -> list[bool]:
        pids = [results.get(r, {}).get("pid") for r in (0, 1, 2)]
        return [pid is not None and wait_for_state(pid, DEAD, timeout=30) for pid in pids]

    results, stderr, ended = run_fault_job("stall-close", engine, tmp_path, survivors_ended)
    assert sorted(results) == [0, 1, 2, 3], (results, stderr)
    for rank in (0, 1, 2):
        r = results[rank]
        assert r["intact_draws"] == 10 and r["excluded"] == [], r
        assert 0.9 * TIMEOUT <= r["close_s"] < 2 * TIMEOUT, r
        assert any("did not close in time" in w for w in r["close_warnings"]), r
    assert ended == [True, True, True], stderr
    assert stderr.count("a peer did not close in time during this run; exiting with status 0") == 3, stderr
