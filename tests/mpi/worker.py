"""Multi-rank scenarios for tests/mpi, run by each rank under mpiexec:

    mpiexec -n 4 python tests/mpi/worker.py --engine mpi [--scenarios idle,correct,...]

Each scenario builds its own DistributedRehearsalBuffer, measures, and returns plain
numbers; rank 0 prints one line ``RESULT {json}`` with every rank's numbers per scenario
(the pytest side asserts on them). A scenario that raises prints its traceback and aborts
the job, so a failure never turns into a hang.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402
from scenario_runner import run_scenarios  # noqa: E402

from reverie import _core  # noqa: E402
from reverie.distributed import DistributedRehearsalBuffer  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
ID_BASE = 1_000_000  # global sample id: rank * ID_BASE + insertion number (exact in float32)
TIMEOUT = 20.0
GATHER_ROWS = 32  # MpiTransport::kGatherRows: rows per payload message when the library gathers

# Layouts for the correctness checks: one 12 KB field (past the eager limit: MPICH reads its
# rows in place, Open MPI over shared memory gets them packed in one message, the network
# path one message per row), a tiny one (rows packed into one message), and three fields of
# different dtypes: two packed, one 68 KB (past kPackRowBytes: one message per row).
LAYOUTS = {
    "single": {"x": ((3, 32, 32), torch.float32)},
    "tiny": {"x": ((16,), torch.float32)},  # cheap to check: for thousands of steps
    "multi": {
        "img": ((3, 32, 32), torch.uint8),
        "idx": ((2,), torch.int64),
        "logits": ((17_000,), torch.float32),
    },
}


# -- sample encoding ---------------------------------------------------------------------
def label_of(g: torch.Tensor) -> torch.Tensor:
    return g % 7


def weight_of(g: torch.Tensor) -> torch.Tensor:
    return (0.5 + (g % 1000).to(torch.float32) / 1000.0).to(torch.float32)


def field_of(name: str, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Tensor) -> torch.Tensor:
    """The content of field `name` for samples with global ids g: a function of g only."""
    numel = 1
    for d in shape:
        numel *= d
    j = torch.arange(numel, dtype=torch.int64)
    if name == "idx":
        flat = torch.stack([g // ID_BASE, g % ID_BASE], dim=1)
    elif dtype == torch.uint8:
        flat = (g[:, None] * 31 + j[None, :]) % 251
    else:  # float32: element 0 holds g itself, the rest a pattern of g (exact integers)
        flat = (g[:, None] * 7 + j[None, :]) % 65_521
        flat[:, 0] = g
    return flat.to(dtype).reshape(len(g), *shape).contiguous()


def decode_ids(layout: str, batch) -> torch.Tensor:
    if layout == "multi":
        idx = batch["idx"]
        return idx[:, 0] * ID_BASE + idx[:, 1]
    return batch["x"].reshape(len(batch), -1)[:, 0].to(torch.int64)


def make_batch(layout: str, first: int, n: int):
    g = RANK * ID_BASE + torch.arange(first, first + n, dtype=torch.int64)
    fields = {name: field_of(name, shape, dtype, g) for name, (shape, dtype) in LAYOUTS[layout].items()}
    return fields, label_of(g), weight_of(g)


def check_draw(layout: str, batch) -> dict[str, int]:
    """Counts samples whose owner, label, weight or any field byte differs from what the
    owner stored for that id, and ids drawn twice in one draw."""
    k = len(batch)
    if k == 0:
        return {"checked": 0, "bad": 0, "dupes": 0}
    g = decode_ids(layout, batch)
    ok = batch.ranks.to(torch.int64) == g // ID_BASE
    ok &= batch.labels == label_of(g)
    ok &= batch.weights == weight_of(g)
    for name, (shape, dtype) in LAYOUTS[layout].items():
        ok &= (batch[name] == field_of(name, shape, dtype, g)).reshape(k, -1).all(dim=1)
    return {"checked": k, "bad": int((~ok).sum()), "dupes": k - len(torch.unique(g))}


def merge(total: dict[str, int], part: dict[str, int]) -> None:
    for key, v in part.items():
        total[key] = total.get(key, 0) + v


def new_buffer(engine: str, capacity: int, fields, **kw) -> DistributedRehearsalBuffer:
    return DistributedRehearsalBuffer(
        capacity, fields, num_classes=None, seed=7, comm=COMM, engine=engine, timeout=TIMEOUT, **kw
    )


# -- scenarios ---------------------------------------------------------------------------
def scenario_idle(engine: str) -> dict:
    """CPU time of the whole process (server and worker threads included) while idle."""
    with new_buffer(engine, 64, {"x": ((16,), torch.float32)}) as dbuf:
        dbuf.add({"x": torch.zeros(8, 16)}, torch.zeros(8, dtype=torch.int64))
        dbuf.flush()
        COMM.Barrier()
        dbuf.get_remote_samples(4).wait()
        COMM.Barrier()
        time.sleep(0.05)  # let the server leave its post-request spin window
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(2.0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        COMM.Barrier()
        dbuf.get_remote_samples(4).wait()  # still serving after the idle spell
    rusage = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {"cpu_s": cpu, "rusage_s": rusage, "wall_s": wall}


def scenario_correct(engine: str) -> dict:
    """Every drawn sample equals what its owner stored, while owners keep replacing slots
    (phase 1) and once everything is flushed (phase 2), for both layouts."""
    out = {}
    for layout in LAYOUTS:
        total: dict[str, int] = {}
        with new_buffer(engine, 120, LAYOUTS[layout], max_representatives=64) as dbuf:
            inserted = 0
            for step in range(40):  # 40 x 16 = 640 offers into 120 slots: constant replacement
                fields, labels, weights = make_batch(layout, inserted, 16)
                dbuf.add(fields, labels, weights)
                inserted += 16
                merge(total, check_draw(layout, dbuf.get_remote_samples(8 + step % 25).wait()))
            dbuf.flush()
            COMM.Barrier()
            dbuf.get_remote_samples(1).wait()  # learn the final sizes
            COMM.Barrier()
            short, remote, past_one_message = 0, 0, 0
            held_intact, held_moved, released_reused = 0, 0, 0
            held, released_at = None, None  # a kept draw's views and their copy; a released one's memory
            global_size = dbuf.global_size()
            for i, r in enumerate((1, 7, 32) + (64,) * 10):
                handle = dbuf.get_remote_samples(r)
                batch = handle.wait()
                at = batch.labels.data_ptr()
                if held is not None:  # the draw before, not released, is intact and elsewhere
                    held_intact += int(all(torch.equal(v, c) for v, c in held))
                    held_moved += int(at != held[0][0].data_ptr())
                released_reused += int(at == released_at)
                short += int(len(batch) != min(r, global_size))
                remote += int((batch.ranks != RANK).sum())
                from_peers = torch.bincount(batch.ranks[batch.ranks != RANK], minlength=SIZE)
                past_one_message += int((from_peers > GATHER_ROWS).any())
                merge(total, check_draw(layout, batch))
                # Odd draws are released (their block takes the next draw), even ones kept.
                held, released_at = None, None
                if i % 2:
                    handle.release()
                    released_at = at
                else:
                    views = [batch.labels, *(batch[name] for name in batch.keys())]
                    held = [(v, v.clone()) for v in views]
            total.update(short=short, remote=remote, size=len(dbuf), global_size=global_size)
            total.update(held_intact=held_intact, held_moved=held_moved, released_reused=released_reused)
            # MPI engine: one message carries at most GATHER_ROWS rows of a peer (None: other engines)
            total.update(past_one_message=past_one_message, gathers_rows=dbuf._transport.gathers_rows)
            stats = dbuf.engine_stats()
            total["failed_requests"] = int(stats["failed_requests"])
            total.update({k: stats[k] for k in ("fetch_s", "local_s", "answer_wait_s", "rows_wait_s")})
        out[layout] = total
    return out


def scenario_unbiased(engine: str, draws: int, r: int) -> dict:
    """Unequal fills (rank 0 holds 10x rank 1); after a flush and a warm-up draw, counts how
    often each (owner, slot) is drawn. Returned per rank; pooled on the pytest side."""
    fills = [300, 30, 150, 60, 90, 240, 45, 120]
    n = fills[RANK % len(fills)]
    with new_buffer(engine, n, {"id": ((2,), torch.int64)}, max_representatives=r) as dbuf:
        ids = torch.arange(n, dtype=torch.int64)
        dbuf.add({"id": torch.stack([torch.full((n,), RANK), ids], 1)}, torch.zeros(n, dtype=torch.int64))
        dbuf.flush()
        COMM.Barrier()
        dbuf.get_remote_samples(1).wait()  # sizes are at most one draw stale: learn them first
        COMM.Barrier()
        sizes = COMM.allgather(len(dbuf))
        known = dbuf.global_size()
        per_slot = [[0] * s for s in sizes]
        short = 0
        for _ in range(draws):
            batch = dbuf.get_remote_samples(r).wait()
            short += int(len(batch) != r)
            for owner, slot in batch["id"].tolist():
                per_slot[owner][slot] += 1
    return {"sizes": sizes, "known_global": known, "per_slot": per_slot, "short": short}


def scenario_concurrent(engine: str, seconds: float, max_steps: int) -> dict:
    """Adds and draws on every rank at once, pipelined as in training (the draw for step
    i + 1 is requested before step i's is used); then close with two draws in flight."""
    total: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dbuf = new_buffer(engine, 100, LAYOUTS["tiny"], max_representatives=16, candidates=4)
        COMM.Barrier()
        t0 = time.perf_counter()
        steps, inserted = 0, 0
        handle = dbuf.get_remote_samples(8)
        while steps < max_steps and time.perf_counter() - t0 < seconds:
            fields, labels, weights = make_batch("tiny", inserted, 8)
            inserted += 8
            dbuf.add(fields, labels, weights)
            nxt = dbuf.get_remote_samples(1 + steps % 16)
            merge(total, check_draw("tiny", handle.wait()))
            handle = nxt
            steps += 1
        loop_s = time.perf_counter() - t0
        remote = int(dbuf.engine_stats()["rows_remote"])
        dbuf.get_remote_samples(16)  # in flight at close, never waited
        t1 = time.perf_counter()
        dbuf.close()
        close_s = time.perf_counter() - t1
    total.update(
        steps=steps,
        loop_s=loop_s,
        close_s=close_s,
        rows_remote=remote,
        warnings=[str(w.message) for w in caught],
    )
    return total


def scenario_bad_requests(engine: str) -> dict:
    """Hand-crafted requests to the next rank's server through the engine's own
    communicator; every one must get the right error reply, and draws must still work."""
    out: dict = {}
    with new_buffer(engine, 50, LAYOUTS["single"], max_representatives=16) as dbuf:
        fields, labels, weights = make_batch("single", 0, 40 + RANK)
        dbuf.add(fields, labels, weights)
        dbuf.flush()
        sizes = COMM.allgather(len(dbuf))
        transport = dbuf._transport
        if not hasattr(transport, "send_raw_request"):
            out["skipped"] = f"engine {dbuf.engine!r} has no raw-request test hook"
        else:
            peer = (RANK + 1) % SIZE
            n, tok, max_rows = sizes[peer], dbuf._token, dbuf.max_representatives
            enc = _core.wire_encode_request
            good = enc(tok, ID_BASE + 1, [0, n - 1])
            bad_magic = b"XXXX" + good[4:]
            bad_version = good[:4] + (99).to_bytes(2, "little") + good[6:]
            # names 3 slots, carries 2 (the count is the uint32 at byte 24 of the header)
            count_lies = good[:24] + (3).to_bytes(4, "little") + good[28:]
            # (request bytes, expected status, header readable). A request whose header cannot
            # be read has no id: the MPI engine answers it on its anonymous reply tag.
            cases = {
                "size_query": (enc(tok, ID_BASE + 2, []), "ok", True),
                "two_slots": (good, "ok", True),
                "wrong_token": (enc(tok ^ 0x5A5A, ID_BASE + 3, [0]), "bad_token", True),
                "slot_eq_size": (enc(tok, ID_BASE + 4, [0, n]), "bad_slot", True),
                "slot_max": (enc(tok, ID_BASE + 5, [2**32 - 1]), "bad_slot", True),
                "too_many": (enc(tok, ID_BASE + 6, [0] * (max_rows + 1)), "too_many", True),
                "truncated": (enc(tok, ID_BASE + 7, [0, 1, 2])[:-3], "malformed", True),
                "count_lies": (count_lies, "malformed", True),
                "oversized": (enc(tok, ID_BASE + 8, [0]) + bytes(1 << 20), "malformed", True),
                "bad_magic": (bad_magic, "malformed", False),
                "bad_version": (bad_version, "malformed", False),
                "short": (good[:5], "malformed", False),
                "empty": (b"", "malformed", False),
            }
            for name, (data, want, readable) in cases.items():
                reply = transport.send_raw_request(peer, data, 10.0)
                row = {"want": want, "readable": readable, "engine": dbuf.engine}
                if reply is None:
                    out[name] = dict(row, got="no reply")
                    continue
                row["got"] = reply["status"].name
                row["anonymous"] = reply.get("anonymous")  # None: the engine has no such notion
                row.update(
                    {
                        k: reply.get(k)
                        for k in (
                            "request_id",
                            "owner_size",
                            "count",
                            "payload_bytes",
                            "payload_messages",
                            "whole",
                        )
                    }
                )
                out[name] = row
            out["owner_size"] = n
            out["row_bytes"] = dbuf.schema.field_bytes[0]
            out["gathers_rows"] = transport.gathers_rows
        COMM.Barrier()  # every server has answered every bad request
        dbuf.get_remote_samples(1).wait()
        COMM.Barrier()
        total: dict[str, int] = {}
        remote = 0
        for _ in range(10):
            batch = dbuf.get_remote_samples(16).wait()
            remote += int((batch.ranks != RANK).sum())
            merge(total, check_draw("single", batch))
        out["after"] = dict(total, remote=remote, excluded=dbuf.excluded_peers())
        stats = dbuf.engine_stats()
        out["after"]["failed_requests"] = int(stats["failed_requests"])
        out["after"]["bad_token_requests"] = int(stats["bad_token_requests"])
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", default="mpi")
    p.add_argument("--scenarios", default="idle,correct,unbiased,concurrent,bad_requests")
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=4000)
    args = p.parse_args()
    runners = {
        "idle": lambda: scenario_idle(args.engine),
        "correct": lambda: scenario_correct(args.engine),
        "unbiased": lambda: scenario_unbiased(args.engine, args.draws, 16),
        "concurrent": lambda: scenario_concurrent(args.engine, args.seconds, args.max_steps),
        "bad_requests": lambda: scenario_bad_requests(args.engine),
    }
    return run_scenarios(COMM, args.engine, runners, args.scenarios.split(","))


if __name__ == "__main__":
    sys.exit(main())
