"""Runs under mpiexec with engine="thallium": ``thallium_worker.py <scenario> <address>``.

Every sample encodes its owner and id: meta = [owner rank, id, step, 7], img (12 KB) a
pattern of id, label id % 5, weight (id % 1000) / 1000, so a drawn row can be checked
against what its owner stored. Prints one JSON line per rank: {"rank": r, ...}.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings

import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer, _core

B = 16
IMG = (3, 32, 32)
FIELDS = {"meta": ((4,), torch.int64), "img": (IMG, torch.float32)}
PATTERN = torch.arange(3 * 32 * 32)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def batch(rank: int, step: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    ids = rank * 1_000_000 + step * B + torch.arange(B)
    meta = torch.stack([torch.full((B,), rank), ids, torch.full((B,), step), torch.full((B,), 7)], dim=1)
    img = ((ids[:, None] * 31 + PATTERN) % 251).float().view(B, *IMG)
    return {"meta": meta, "img": img}, ids % 5, (ids % 1000).float() / 1000


def intact(s) -> bool:
    """Every row is exactly what its owner (s.ranks) stored."""
    meta, ids = s["meta"], s["meta"][:, 1]
    img = ((ids[:, None] * 31 + PATTERN) % 251).float().view(-1, *IMG)
    return bool(
        torch.equal(meta[:, 0], s.ranks.long())
        and torch.equal(ids // 1_000_000, s.ranks.long())
        and torch.all(meta[:, 3] == 7)
        and torch.equal(s.labels, ids % 5)
        and torch.equal(s.weights, (ids % 1000).float() / 1000)
        and torch.equal(s["img"], img)
    )


def make(comm, address: str, timeout: float = 10.0, **kw) -> DistributedRehearsalBuffer:
    return DistributedRehearsalBuffer(
        256,
        FIELDS,
        candidates=8,
        seed=5,
        comm=comm,
        engine="thallium",
        address=address,
        timeout=timeout,
        **kw,
    )


def correct(comm, address: str) -> dict:
    rank = comm.rank
    owners, bad, rows = set(), 0, 0
    with make(comm, address, max_representatives=64) as dbuf:
        for step in range(30):
            dbuf.add(*batch(rank, step))
            for r in (0, 1, 7, 28, 64):
                s = dbuf.get_remote_samples(r).wait()
                bad += not intact(s)
                rows += len(s)
                owners.update(s.ranks.tolist())
        dbuf.flush()
        comm.Barrier()
        sizes = dbuf._engine_or_raise().known_sizes()
        s = dbuf.get_remote_samples(64).wait()  # after a barrier every owner holds >= 64
        full = len(s)
        stats = dbuf.engine_stats()
        served = dbuf._transport.requests_served
    return {
        "rank": rank,
        "bad_draws": bad,
        "rows": rows,
        "owners": sorted(owners),
        "full_draw": full,
        "known_sizes": list(sizes),
        "failed": stats["failed_requests"],
        "rows_remote": stats["rows_remote"],
        "served": served,
    }


def refused(comm, address: str) -> dict:
    rank, size = comm.rank, comm.size
    out = {"rank": rank}
    with make(comm, address, max_representatives=8) as dbuf:
        dbuf.add(*batch(rank, 0))
        dbuf.flush()
        comm.Barrier()
        peer = (rank + 1) % size
        t = dbuf._transport
        token = dbuf._token

        def ask(data: bytes) -> dict:
            reply = t.send_raw_request(peer, data, 5.0)
            assert reply is not None, "no reply"
            return {
                "status": reply["status"].name,
                "count": reply["count"],
                "size": reply["owner_size"],
                "id": reply["request_id"],
                "bytes": reply["reply_bytes"],
            }

        out["bad_token"] = ask(_core.wire_encode_request(token ^ 0x5A5A, 11, [0, 1]))
        out["bad_slot"] = ask(_core.wire_encode_request(token, 12, [0, 1_000_000]))
        out["too_many"] = ask(_core.wire_encode_request(token, 13, list(range(9))))
        out["truncated"] = ask(_core.wire_encode_request(token, 14, [0, 1])[:-3])
        out["garbage"] = ask(b"\x00" * 5)
        out["size_only"] = ask(_core.wire_encode_request(token, 15, []))
        out["ok"] = ask(_core.wire_encode_request(token, 16, [0, 1, 2]))
        comm.Barrier()
        # The owner survived all of that: ordinary draws still work.
        bad = 0
        for step in range(1, 6):
            dbuf.add(*batch(rank, step))
            bad += not intact(dbuf.get_remote_samples(8).wait())
        out["bad_after"] = bad
        out["failed_after"] = dbuf.engine_stats()["failed_requests"]
    return out


def close_in_flight(comm, address: str) -> dict:
    """Ranks close at different times while draws are in flight; close stays clean."""
    rank = comm.rank
    dbuf = make(comm, address, timeout=10.0)
    for step in range(5):
        dbuf.add(*batch(rank, step))
        dbuf.get_remote_samples(16).wait()
    comm.Barrier()
    bad = 0
    t_end = time.perf_counter() + 0.4 * rank  # rank 0 closes at once, the others keep drawing
    while True:
        h = dbuf.get_remote_samples(16)
        if time.perf_counter() >= t_end:
            break
        bad += not intact(h.wait())
    dbuf.get_remote_samples(16)  # two draws in flight at close
    failed = dbuf.engine_stats()["failed_requests"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        dbuf.close()
        close_s = time.perf_counter() - t
    return {
        "rank": rank,
        "bad": bad,
        "failed": failed,
        "close_s": close_s,
        "warnings": [str(w.message) for w in caught],
    }


def peer_stops(comm, address: str) -> dict:
    """The last rank abandons (stops serving, no collective close); the others go on."""
    rank, victim = comm.rank, comm.size - 1
    timeout = 2.0
    # Hydra (-disable-auto-cleanup) tells the others with SIGUSR1 when a rank leaves without
    # MPI_Finalize, which would terminate them by default.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    dbuf = make(comm, address, timeout=timeout)
    for step in range(5):
        dbuf.add(*batch(rank, step))
        dbuf.get_remote_samples(16).wait()
    dbuf.flush()
    comm.Barrier()
    dbuf.get_remote_samples(16).wait()  # everyone knows every size
    comm.Barrier()
    if rank == victim:
        dbuf._abandon()
        comm.Barrier()
        comm.Barrier()
        # Its peers gave up on it and leave without MPI_Finalize, so its own would wait for
        # them forever: it leaves the same way (the launcher keeps the others, lost_rank_args).
        emit({"rank": rank, "victim": True})
        os._exit(0)
    comm.Barrier()  # the victim has stopped serving
    bad, slowest, late = 0, 0.0, 0
    for step in range(5, 20):
        dbuf.add(*batch(rank, step))
        t = time.perf_counter()
        s = dbuf.get_remote_samples(16).wait(timeout=4 * timeout)
        slowest = max(slowest, time.perf_counter() - t)
        bad += not intact(s)
        late += int((s.ranks == victim).sum())
    excluded = dbuf.excluded_peers()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        dbuf.close()
        close_s = time.perf_counter() - t
    comm.Barrier()
    return {
        "rank": rank,
        "bad": bad,
        "excluded": excluded,
        "slowest_s": slowest,
        "from_victim_late": late,
        "close_s": close_s,
        "close_warned": len(caught) > 0,
    }


def torch_comm(comm, address: str) -> dict:
    """Addresses exchanged over torch.distributed (gloo) instead of mpi4py."""
    import torch.distributed as dist

    port = comm.bcast(29500 + os.getpid() % 2000 if comm.rank == 0 else None)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=comm.rank, world_size=comm.size
    )
    try:
        bad = 0
        with make(dist, address) as dbuf:
            for step in range(10):
                dbuf.add(*batch(comm.rank, step))
                s = dbuf.get_remote_samples(16).wait()
                bad += not intact(s)
            # Every rank's adds are applied and its next draw asks every peer its size:
            # without this a rank that ran its 10 steps before its peer added anything drew
            # its own rows only (seen once in CI).
            dbuf.end_task()
            comm.Barrier()
            owners = sorted(set(dbuf.get_remote_samples(64).wait().ranks.tolist()))
    finally:
        dist.destroy_process_group()
    return {"rank": comm.rank, "bad": bad, "owners": owners}


def setup_fails(comm, address: str) -> dict:
    """The last rank cannot start its engine: every rank raises instead of waiting forever."""
    mine = "no-such-proto" if comm.rank == comm.size - 1 else address
    try:
        make(comm, mine)
    except RuntimeError as exc:
        return {"rank": comm.rank, "raised": str(exc)}
    return {"rank": comm.rank, "raised": None}


SCENARIOS = {f.__name__: f for f in (correct, refused, close_in_flight, peer_stops, torch_comm, setup_fails)}


def main() -> None:
    scenario, address = sys.argv[1], sys.argv[2]
    comm = MPI.COMM_WORLD
    result = SCENARIOS[scenario](comm, address)
    emit(result)


if __name__ == "__main__":
    main()
