"""A peer that dies or stops answering: the survivors time out, exclude it, keep training,
and close promptly. The peer really crashes (exits abruptly with its threads running) or
really stops (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mpi_launch
import pytest

WORKER = Path(__file__).with_name("fault_worker.py")
TIMEOUT = 3.0
SHM = Path("/dev/shm")


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
@pytest.mark.parametrize("fault", ["crash", "stop"])
def test_survivors_exclude_dead_peer_and_close(fault: str, engine: str) -> None:
    mpi_launch.require_engine(engine)
    shm_before = set(SHM.glob("mpich_shm_*"))
    cmd = [mpi_launch.MPIEXEC, "-disable-auto-cleanup", "-n", "4", sys.executable, str(WORKER), fault, engine]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results: dict[int, dict] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # a line per rank; mpiexec stays up while the victim is stopped
            for obj in mpi_launch.json_objects(line):
                results[obj["rank"]] = obj
            if len(results) == 4:
                break
        victim = results.get(3, {})
        if fault == "stop" and "pid" in victim:
            os.kill(victim["pid"], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert sorted(results) == [0, 1, 2, 3], (results, stderr)
    assert results[3]["victim"]
    for rank in (0, 1, 2):
        r = results[rank]
        assert r["intact_draws"] == 30, r
        assert r["excluded"] == [3], r
        assert r["from_victim_after_exclusion"] == 0, r
        assert r["slowest_draw_s"] < 4 * TIMEOUT, r
        assert r["close_s"] < 2 * TIMEOUT, r
    assert "peer 3" in stderr and "excluding it" in stderr
    # The survivors returned normally and still ended (MPI_Finalize would wait for rank 3).
    assert stderr.count("stopped answering during this run; exiting with status 0 without MPI_Finalize") == 3
    # ... and unlinked the job's MPICH files on the way out (rank 3 could not).
    assert set(SHM.glob("mpich_shm_*")) - shm_before == set()
