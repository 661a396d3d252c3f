"""The Thallium engine on 2 and 4 real ranks (mpiexec), over na+sm and ofi+tcp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mpi_launch
import pytest

from reverie import _core

pytestmark = pytest.mark.skipif(not _core.HAVE_THALLIUM, reason="Reverie built without Thallium")

WORKER = Path(__file__).with_name("thallium_worker.py")
# On one box ofi+tcp must be pinned to loopback: plain "ofi+tcp" listens on the first
# non-loopback interface.
PROTOCOLS = ["na+sm", "ofi+tcp://127.0.0.1"]


def run(n: int, scenario: str, address: str, mpiexec_args: tuple[str, ...] = ()) -> list[dict]:
    return mpi_launch.run_ranks(WORKER, n, scenario, address, timeout=240, mpiexec_args=mpiexec_args)


@pytest.mark.parametrize("address", PROTOCOLS)
@pytest.mark.parametrize("ranks", [2, 4])
def test_every_sample_is_what_its_owner_stored(ranks: int, address: str) -> None:
    for r in run(ranks, "correct", address):
        assert r["bad_draws"] == 0, r
        assert r["failed"] == 0, r
        assert r["owners"] == list(range(ranks)), r
        assert r["full_draw"] == 64, r
        assert r["rows_remote"] > 0 and r["served"] > 0, r
        assert all(size > 0 for size in r["known_sizes"]), r


@pytest.mark.parametrize("address", PROTOCOLS)
def test_bad_requests_are_refused_and_the_owner_survives(address: str) -> None:
    for r in run(2, "refused", address):
        reply = 32  # wire::Reply alone
        assert r["bad_token"] == {"status": "bad_token", "count": 0, "size": 8, "id": 11, "bytes": reply}, r
        assert r["bad_slot"]["status"] == "bad_slot" and r["bad_slot"]["count"] == 0, r
        assert r["too_many"]["status"] == "too_many" and r["too_many"]["count"] == 0, r
        assert r["truncated"]["status"] == "malformed" and r["truncated"]["id"] == 14, r
        assert r["garbage"]["status"] == "malformed" and r["garbage"]["id"] == 0, r
        assert r["size_only"] == {"status": "ok", "count": 0, "size": 8, "id": 15, "bytes": reply}, r
        assert r["ok"] == {"status": "ok", "count": 3, "size": 8, "id": 16, "bytes": reply + 3 * 12}, r
        assert r["bad_after"] == 0 and r["failed_after"] == 0, r


@pytest.mark.parametrize("address", PROTOCOLS)
def test_close_with_draws_in_flight_is_clean(address: str) -> None:
    for r in run(4, "close_in_flight", address):
        assert r["bad"] == 0 and r["failed"] == 0, r
        assert r["warnings"] == [], r  # every rank saw every other rank close in time
        assert r["close_s"] < 5.0, r


@pytest.mark.parametrize("address", PROTOCOLS)
def test_peer_that_stops_is_excluded_and_close_is_bounded(address: str) -> None:
    # Every rank leaves without MPI_Finalize (the survivors gave up on the victim): the
    # launcher must not kill the others when the first one does (it killed the victim while
    # it finalised, exit 9: 1 CI run on 2026-12-06, ofi+tcp).
    results = run(4, "peer_stops", address, mpiexec_args=tuple(mpi_launch.lost_rank_args()))
    assert results[3]["victim"]
    for r in results[:3]:
        assert r["bad"] == 0, r
        assert r["excluded"] == [3], r
        assert r["from_victim_late"] == 0, r
        assert r["slowest_s"] < 2 * 2.0, r  # one timeout (2 s), not one per draw
        assert r["close_warned"] and r["close_s"] < 2.0 + 2.0, r  # deadline-bounded, reported


def test_addresses_exchanged_over_torch_distributed() -> None:
    for r in run(2, "torch_comm", "na+sm"):
        assert r["bad"] == 0 and r["owners"] == [0, 1], r


def test_failed_setup_on_one_rank_raises_on_every_rank() -> None:
    for r in run(2, "setup_fails", "na+sm"):
        assert r["raised"] and "rank 1" in r["raised"] and "no-such-proto" in r["raised"], r


def _transport(address: str, world_size: int = 1, rank: int = 0):
    buf = _core.LocalBuffer([16], 8, None, 0, 0)
    return _core.thallium_transport(buf, address, 1234, 8, 2.0, rank, world_size)


def test_one_process_transport_lifecycle() -> None:
    t = _transport("na+sm")
    assert t.name == "thallium" and t.rank == 0 and t.world_size == 1
    assert t.self_address.startswith("na+sm")
    t.connect([t.self_address])
    with pytest.raises(ValueError, match="addresses"):
        t.connect([t.self_address, t.self_address])
    t.abandon()
    with pytest.raises(RuntimeError, match="closed"):
        _ = t.self_address
    t2 = _transport("na+sm")  # a fresh Margo instance after a finalized one
    t2.abandon()


def test_unusable_protocol_is_named_in_the_error() -> None:
    with pytest.raises(RuntimeError, match="no-such-proto"):
        _transport("no-such-proto")


def test_bad_rank_is_rejected() -> None:
    with pytest.raises(ValueError, match="rank"):
        _transport("na+sm", world_size=2, rank=2)


def test_thallium_engine_is_what_auto_picks() -> None:
    from reverie.distributed import _resolve_engine

    assert _resolve_engine("auto", 2) == "thallium"
    assert _resolve_engine("thallium", 4) == "thallium"


def _start_over_leftover(live: bool) -> subprocess.CompletedProcess:
    # A rank that died without closing leaves Mercury's /tmp/na_sm-<pid>-0 (socket) and
    # /dev/shm/na_sm-<pid>-0; pids wrap, and a later process given that pid must still
    # start. Staged in a child process (its own pid); `live` keeps the socket bound.
    code = (
        "import os, socket\n"
        "from reverie import _core\n"
        "d = f'/tmp/na_sm-{os.getpid()}-0'\n"
        "shm = f'/dev/shm/na_sm-{os.getpid()}-0'\n"
        "os.makedirs(d)\n"
        "open(shm, 'w').close()\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(d + '/sock')\n"
        f"{'' if live else 's.close()'}\n"
        "try:\n"
        "    buf = _core.LocalBuffer([16], 8, None, 0, 0)\n"
        "    _core.thallium_transport(buf, 'na+sm', 1234, 8, 2.0, 0, 1).abandon()\n"
        "    print('STARTED', os.path.exists(d), os.path.exists(shm))\n"
        "except RuntimeError as e:\n"
        "    print('ERROR', e)\n"
        "finally:\n"
        "    s.close()\n"
        "    for p in (d + '/sock', shm):\n"
        "        os.path.exists(p) and os.remove(p)\n"
        "    os.path.exists(d) and os.rmdir(d)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def test_leftover_of_a_dead_process_with_this_pid_is_removed() -> None:
    out = _start_over_leftover(live=False)
    assert out.stdout.startswith("STARTED False False"), out.stdout + out.stderr
    assert "removed /tmp/na_sm-" in out.stderr and "dead process" in out.stderr, out.stderr


def test_live_na_sm_socket_of_this_pid_is_kept_and_named() -> None:
    out = _start_over_leftover(live=True)
    assert out.stdout.startswith("ERROR"), out.stdout + out.stderr
    assert "/tmp/na_sm-" in out.stdout and "socket is live" in out.stdout, out.stdout
    assert "removed" not in out.stderr, out.stderr
