"""The MPI engine reads MPICH's eager limit over shared memory through the MPI tool
interface: replies up to it travel without the requester's help (so a draw may start on
the caller and a training thread may answer them), larger rows go one message each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import mpi4py
mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI
from reverie import _core
buffer = _core.LocalBuffer([12288], 8, None, 0, 0)
transport = _core.mpi_transport(buffer, MPI.COMM_WORLD.py2f(), 1, 8, 5.0)
print(MPI.Get_library_version().split()[0], transport.splittable_fetch_bytes)
"""


def probe(env: dict[str, str]) -> tuple[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert proc.returncode == 0, proc.stderr
    library, limit = proc.stdout.split()
    return library, int(limit)


def test_eager_limit_follows_mpich_cma_threshold():
    pytest.importorskip("mpi4py")
    from reverie import _core

    if not _core.HAVE_MPI:
        pytest.skip("Reverie built without MPI")
    library, default = probe({})
    if library != "MPICH":
        pytest.skip(f"the detection is checked against MPICH; this job's MPI is {library}")
    assert default == 8191  # MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD defaults to 8 KiB
    assert probe({"MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD": "4096"})[1] == 4095
