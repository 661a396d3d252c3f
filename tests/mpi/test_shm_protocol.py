"""The MPI engine reads how MPICH moves messages over shared memory through the MPI tool
interface: the eager limit (replies up to it travel without the requester's help, so a
draw may start on the caller and a training thread may answer them) and whether CMA reads
a scattered send in place (then each field's rows of a reply go as one message, else rows
past the eager limit go one message each). Both reply formats are checked end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mpi_jobs import mpirun, require_engine, result_line

PROBE = """
import mpi4py
mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI
from reverie import _core
buffer = _core.LocalBuffer([12288], 8, None, 0, 0)
transport = _core.mpi_transport(buffer, MPI.COMM_WORLD.py2f(), 1, 8, 5.0)
print(MPI.Get_library_version().split()[0], transport.splittable_fetch_bytes, int(transport.gathers_rows))
"""
CMA_OFF = {"MPIR_CVAR_CH4_CMA_ENABLE": "0"}


def probe(env: dict[str, str]) -> tuple[str, int, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert proc.returncode == 0, proc.stderr
    library, limit, gathers = proc.stdout.split()
    return library, int(limit), gathers == "1"


def require_mpich() -> tuple[str, int, bool]:
    """The probe with the job's own settings; skips unless the MPI library is MPICH."""
    require_engine("mpi")
    default = probe({})
    if default[0] != "MPICH":
        pytest.skip(f"the detection is checked against MPICH; this job's MPI is {default[0]}")
    return default


def test_protocol_follows_mpich_cvars():
    assert require_mpich() == ("MPICH", 8191, True)  # MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD: 8 KiB
    assert probe({"MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD": "4096"})[1:] == (4095, True)
    assert probe(CMA_OFF)[2] is False


def test_rows_one_message_each_without_cma():
    # With CMA off the engine falls back to one message per row past the eager limit (and
    # packed rows below it): every drawn sample must still be what its owner stored.
    require_mpich()
    proc = mpirun(
        2, "tests/mpi/worker.py", "--engine", "mpi", "--scenarios", "correct,bad_requests", env=CMA_OFF
    )
    scenarios = result_line(proc)["scenarios"]
    for rank, res in enumerate(scenarios["correct"]):
        for layout, got in res.items():
            if layout.startswith("_"):
                continue
            assert got["gathers_rows"] is False
            assert got["checked"] > 500 and got["remote"] > 0, f"rank {rank}, {layout}: {got}"
            assert got["bad"] == 0 and got["dupes"] == 0 and got["short"] == 0, (
                f"rank {rank}, {layout}: {got}"
            )
            assert got["failed_requests"] == 0
    for res in scenarios["bad_requests"]:
        two = res["two_slots"]
        assert res["gathers_rows"] is False
        assert two["got"] == "ok" and two["payload_messages"] == 2  # 12 KB rows: one message each
        assert two["payload_bytes"] == 2 * res["row_bytes"]
        assert res["after"]["bad"] == 0 and res["after"]["failed_requests"] == 0
