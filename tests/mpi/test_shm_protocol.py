"""The MPI engine reads how the MPI library moves messages through the MPI tool interface,
per pair of ranks (shared memory, or its network module: MPICH's MPIR_CVAR_NOLOCAL, Open
MPI's btl list): the eager limit (replies up to it travel without the requester's help, so a
draw may start on the caller and a training thread may answer them) and whether CMA reads
a scattered send in place (then each field's rows of a reply go as one message, else rows
past the eager limit go one message each). Both reply formats are checked end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mpi_jobs import mpirun, require_engine, result_line
from mpi_launch import find_mpiexec

PROBE = """
import os
import mpi4py
mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI
from reverie import _core
buffer = _core.LocalBuffer([12288], 8, None, 0, 0)
transport = _core.mpi_transport(buffer, MPI.COMM_WORLD.py2f(), 1, 8, 5.0)
paths = ",".join(p["path"] for p in transport.peer_paths)
line = [MPI.Get_library_version().split()[0], transport.splittable_fetch_bytes, int(transport.gathers_rows), paths]
os.write(1, (" ".join(map(str, line)) + chr(10)).encode())  # one write: ranks' lines never interleave
"""
CMA_OFF = {"MPIR_CVAR_CH4_CMA_ENABLE": "0"}


def probe(env: dict[str, str], n: int = 1) -> tuple[str, int, bool, str]:
    """(library, splittable_fetch_bytes, gathers_rows, the path to each rank) of an MPI
    transport, the same on each of `n` ranks (n > 1: under mpiexec)."""
    cmd = [sys.executable, "-c", PROBE]
    if n > 1:
        cmd = [find_mpiexec(), "-n", str(n), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    lines = set(proc.stdout.splitlines())
    assert len(lines) == 1, proc.stdout  # every rank settled the same
    library, limit, gathers, paths = lines.pop().split()
    return library, int(limit), gathers == "1", paths


def require_mpich() -> tuple[str, int, bool, str]:
    """The probe with the job's own settings; skips unless the MPI library is MPICH."""
    require_engine("mpi")
    default = probe({})
    if default[0] != "MPICH":
        pytest.skip(f"the detection is checked against MPICH; this job's MPI is {default[0]}")
    return default


def test_protocol_follows_mpich_cvars():
    assert require_mpich() == ("MPICH", 8191, True, "shm")  # MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD: 8 KiB
    assert probe({"MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD": "4096"})[1:3] == (4095, True)
    assert probe(CMA_OFF)[2] is False


def test_network_path_when_mpich_keeps_shared_memory_out():
    # MPIR_CVAR_NOLOCAL=1 sends every message through MPICH's network module: no in-place
    # gathers, the network eager limit (MPICH's netmods expose none: 4 KiB).
    require_mpich()
    assert probe({"MPIR_CVAR_NOLOCAL": "1"})[1:] == (4096, False, "net")
    assert probe({"MPIR_CVAR_NOLOCAL": "1"}, n=2)[1:] == (4096, False, "net,net")
    assert probe({}, n=2)[1:] == (8191, True, "shm,shm")


OFI = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi"}


def test_mpich_ofi_module_eager_threshold():
    # MPICH's OFI module sends below MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD without a handshake of
    # its own (so up to one byte less); at -1 (its default) up to the provider's largest
    # message, taken as 64 KiB.
    # The module is the one chosen (any of MPICH's spellings), else the device's first.
    require_mpich()
    assert probe(OFI)[1:] == (65536, False, "net")
    assert probe({**OFI, "MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD": "16384"}, n=2)[1:] == (16383, False, "net,net")
    assert probe({"MPIR_CVAR_NOLOCAL": "1", "MPICH_CH4_NETMOD": "OFI"})[1] == 65536
    assert probe({"MPIR_CVAR_NOLOCAL": "1", "MPICH_CH4_NETMOD": "ucx"})[1] == 4096
    assert probe({"MPIR_CVAR_CH4_NETMOD": "ofi"}, n=2)[1:] == (8191, True, "shm,shm")  # shm first


def two_row_replies(env: dict[str, str], gathers: bool) -> list[dict]:
    """Runs worker.py's correct and bad_requests scenarios on 2 ranks under `env`, checks
    every drawn sample is what its owner stored (and whether rows were gathered in place),
    and returns each rank's reply to a request for two 12 KB rows (with the row size)."""
    proc = mpirun(2, "tests/mpi/worker.py", "--engine", "mpi", "--scenarios", "correct,bad_requests", env=env)
    scenarios = result_line(proc)["scenarios"]
    for rank, res in enumerate(scenarios["correct"]):
        for layout, got in res.items():
            if layout.startswith("_"):
                continue
            assert got["gathers_rows"] is gathers, (rank, layout, got)
            assert got["checked"] > 500 and got["remote"] > 0, (rank, layout, got)
            assert got["bad"] == got["dupes"] == got["short"] == got["failed_requests"] == 0, (
                rank,
                layout,
                got,
            )
    replies = []
    for res in scenarios["bad_requests"]:
        assert res["gathers_rows"] is gathers
        assert res["after"]["bad"] == 0 and res["after"]["failed_requests"] == 0
        assert res["two_slots"]["got"] == "ok", res
        assert res["two_slots"]["payload_bytes"] == 2 * res["row_bytes"]
        replies.append(res["two_slots"])
    return replies


def test_rows_over_mpich_ofi_travel_in_the_reply():
    # Over MPICH's OFI module a reply of two 12 KB rows is under the eager limit: it travels
    # whole, rows packed behind the header in one message (UCX's network path would send a
    # header and 2 rows), and every drawn sample is what its owner stored.
    require_mpich()
    replies = two_row_replies(OFI, gathers=False)
    assert [(two["whole"], two["payload_messages"]) for two in replies] == [(True, 0), (True, 0)], replies


UCX_NET = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ucx"}


def test_rows_over_mpich_ucx_travel_in_eager_pieces():
    # MPICH's UCX module names no eager limit (4 KiB taken), and UCX sends a 12 KB message by
    # rendezvous: each 12 KB row goes as three 4 KiB pieces instead, 6 messages for two rows
    # (68 KB rows, past kMostRowPieces pieces, still one message each: the "multi" layout),
    # and every drawn sample is what its owner stored. Rows go whole where UCX_RNDV_THRESH
    # sends them eagerly (its intra-node value here: the ranks share a node), or with
    # REVERIE_MPI_REPLY=rows.
    require_mpich()
    replies = two_row_replies(UCX_NET, gathers=False)
    assert [(two["whole"], two["payload_messages"]) for two in replies] == [(False, 6), (False, 6)], replies
    for setting in ({"UCX_RNDV_THRESH": "intra:16k,inter:auto"}, {"REVERIE_MPI_REPLY": "rows"}):
        replies = two_row_replies({**UCX_NET, **setting}, gathers=False)
        assert [two["payload_messages"] for two in replies] == [2, 2], (setting, replies)
    replies = two_row_replies({**UCX_NET, "UCX_RNDV_THRESH": "auto,inter:16k"}, gathers=False)  # intra: auto
    assert [two["payload_messages"] for two in replies] == [6, 6], replies


def test_open_mpi_limits_and_paths():
    # Open MPI 5: the sm BTL's eager limit (4 KiB by default) between ranks of one node, the
    # tcp BTL's (64 KiB) when its "btl" list leaves sm out; ob1 packs scattered sends, so
    # nothing gathers in place. No MPICH variable is there to read: the reads degrade.
    require_engine("mpi")
    if probe({})[0] != "Open":
        pytest.skip("checked against Open MPI")
    assert probe({}, n=2)[1:] == (4096, False, "shm,shm")
    assert probe({"OMPI_MCA_btl": "self,tcp"}, n=2)[1:] == (65536, False, "net,net")
    assert probe({"OMPI_MCA_btl": "^sm"}, n=2)[3] == "net,net"


def test_rows_over_open_mpi_tcp_travel_in_the_reply():
    # Under the tcp BTL's eager limit (64 KiB) a reply of two 12 KB rows travels whole, and
    # every drawn sample is what its owner stored.
    require_engine("mpi")
    if probe({})[0] != "Open":
        pytest.skip("checked against Open MPI")
    replies = two_row_replies({"OMPI_MCA_btl": "self,tcp"}, gathers=False)
    assert [(two["whole"], two["payload_messages"]) for two in replies] == [(True, 0), (True, 0)], replies


def test_rows_without_cma_travel_packed_or_alone():
    # With CMA off the library cannot read scattered rows in place: rows up to kPackRowBytes
    # (the 12 KB ones) travel packed in one message behind the header (two of them are past
    # the eager limit, so not in it), larger ones (68 KB) one message each, and every drawn
    # sample must still be what its owner stored.
    require_mpich()
    replies = two_row_replies(CMA_OFF, gathers=False)
    assert [(two["whole"], two["payload_messages"]) for two in replies] == [(False, 1), (False, 1)], replies


@pytest.mark.parametrize("way, messages", [("rows", 2), ("packed", 1), ("gathered", 1)])
def test_reply_way_forced_by_environment(way: str, messages: int):
    # REVERIE_MPI_REPLY forces how a reply's rows travel on every path (for a library or
    # fabric where another way is faster): two 12 KB rows go as two messages, or one packed,
    # or one datatype over the slots; every drawn sample is still what its owner stored.
    require_engine("mpi")
    replies = two_row_replies({"REVERIE_MPI_REPLY": way}, gathers=way == "gathered")
    assert [two["payload_messages"] for two in replies] == [messages, messages], (way, replies)


CONSTRUCT = """
import mpi4py
mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI
from reverie import _core
buffer = _core.LocalBuffer([12288], 8, None, 0, 0)
try:
    _core.mpi_transport(buffer, MPI.COMM_WORLD.py2f(), 1, 8, 5.0)
except ValueError as e:
    print(e, flush=True)
"""


def test_reply_way_refused_unless_known_and_the_same_everywhere():
    # Both ranks of a pair must expect the same messages: an unknown value, or ranks that
    # disagree, fail construction on every rank (none is left waiting for the others).
    require_engine("mpi")
    mpiexec = find_mpiexec()
    env = {**os.environ, "REVERIE_MPI_REPLY": "fast"}
    cmd = [mpiexec, "-n", "2", sys.executable, "-c", CONSTRUCT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.stdout.count("REVERIE_MPI_REPLY: expected auto, rows, packed or gathered; rank 0") == 2, proc
    if probe({})[0] != "MPICH":
        return  # per-rank environments below use Hydra's MPMD syntax
    one = [sys.executable, "-c", CONSTRUCT]
    cmd = [mpiexec, "-n", "1", "-env", "REVERIE_MPI_REPLY", "rows", *one, ":", "-n", "1", *one]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("must be the same on every rank; rank 1 has auto, rank 0 rows") == 2, proc
