"""Runs under mpiexec: checks RehearsalLoader batches, overlap events and clean exits.

Prints one JSON line per rank: {"rank": r, "ok": true, ...}; any failed check raises.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer, RehearsalLoader

B, R = 12, 5


def make_stream(rank: int, steps: int, multi: bool) -> list[tuple]:
    """Minibatches whose every sample encodes (rank, label, id); weight = id / 1000."""
    stream = []
    for step in range(steps):
        ids = torch.arange(step * B, (step + 1) * B) + rank * 1_000_000
        y = ids % 7
        x = torch.stack([torch.full((6,), float(i)) for i in ids])
        w = (ids % 1000).float() / 1000
        fields = {"x": x, "tag": ids.clone()} if multi else x
        stream.append((fields, y, w))
    return stream


def decode_ok(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> bool:
    ids = x[:, 0].long()
    return bool(
        torch.all(x == x[:, :1])
        and torch.equal(ids % 7, y)
        and torch.allclose((ids % 1000).float() / 1000, w)
    )


def check_batches(comm: MPI.Comm, multi: bool, device: str, input_device: str) -> dict:
    fields = {"x": ((6,), torch.float32)}
    if multi:
        fields["tag"] = ((), torch.int64)
    stream = make_stream(comm.rank, 40, multi)
    feed = [tuple(_to_device(t, input_device) for t in batch) for batch in stream]
    drawn_from = set()
    with DistributedRehearsalBuffer(64, fields, candidates=4, seed=3, comm=comm, timeout=20) as dbuf:
        loader = RehearsalLoader(feed, dbuf, representatives=R, device=device)
        for step, batch in enumerate(loader):
            assert all(t.device.type == device for t in _tensors(batch))
            x, y, w = _to_cpu(batch)
            fx, fy, fw = stream[step]
            xs = x["x"] if multi else x
            new = fx["x"] if multi else fx
            assert torch.equal(xs[:B], new) and torch.equal(y[:B], fy) and torch.equal(w[:B], fw)
            assert xs.shape[0] == y.shape[0] == w.shape[0] <= B + R
            assert loader.drawn == xs.shape[0] - B
            if step >= 3:
                assert xs.shape[0] == B + R, f"step {step}: warm-up should be over, got {xs.shape[0] - B}"
            assert decode_ok(xs[B:], y[B:], w[B:])
            if multi:
                assert torch.equal(x["tag"][B:], xs[B:, 0].long())
            drawn_from.update((xs[B:, 0].long() // 1_000_000).tolist())
            engine = {k: dbuf.engine_stats()[k] for k in ("rows_remote", "failed_requests")}  # for the report
            engine["global_size"] = dbuf.global_size()
            comm.Barrier()  # lockstep, as DDP's gradient all-reduce keeps ranks: peers' sizes grow meanwhile
        stats = loader.stats()
    return {
        "drawn_from": sorted(drawn_from),
        "steps": stats["steps"],
        "drawn": stats["samples_drawn"],
        "engine": dbuf.engine,
        **engine,
    }


def check_slow_side_stream(comm: MPI.Comm) -> dict:
    """CUDA only: the loader's copy stream is made slow (a GPU sleep before every copy) and
    the yielded tensors are read later. Without the default stream waiting on the copies,
    rows would be stale; without finishing a copy before its receive block is reused, the
    drawn rows would be those of the draw after next. Both are checked against a CPU clone
    of each draw taken while its block was still intact."""
    stream = make_stream(comm.rank, 30, False)
    kept = []
    with DistributedRehearsalBuffer(
        64, {"x": ((6,), torch.float32)}, candidates=4, comm=comm, timeout=20
    ) as dbuf:
        loader = RehearsalLoader(stream, dbuf, representatives=R, device="cuda")
        assert dbuf.is_pinned and all(b.labels.is_pinned() for b in dbuf.receive_blocks())
        previous = None
        for step, (x, y, w) in enumerate(loader):
            used = previous.wait().clone() if previous is not None else None
            previous = loader.pending
            kept.append((step, x.clone(), y.clone(), w.clone(), used))  # kernels on the default stream
            with torch.cuda.stream(loader._cuda.stream):
                torch.cuda._sleep(20_000_000)  # ~10 ms: the next copies queue behind it
        torch.cuda.synchronize()
        for step, x, y, w, used in kept:
            fx, fy, fw = stream[step]
            x, y, w = x.cpu(), y.cpu(), w.cpu()
            assert torch.equal(x[:B], fx) and torch.equal(y[:B], fy) and torch.equal(w[:B], fw), (
                f"step {step}: stale rows"
            )
            if used is not None:
                assert torch.equal(x[B:], used["x"]) and torch.equal(y[B:], used.labels), (
                    f"step {step}: drawn rows"
                )
                assert torch.equal(w[B:], used.weights)
    return {"steps": len(kept)}


def check_overlap(comm: MPI.Comm) -> dict:
    """A slow step (real compute, in chunks): the next draw arrives while it computes,
    without the loop waiting for it. A loader that only fetched inside wait() would never
    see it arrive and would exhaust the compute budget."""
    stream = make_stream(comm.rank, 12, False)
    a = torch.randn(128, 128)
    arrived_during_step = 0
    with DistributedRehearsalBuffer(64, {"x": ((6,), torch.float32)}, comm=comm, timeout=20) as dbuf:
        loader = RehearsalLoader(stream, dbuf, representatives=R)
        loader.trace()
        for _ in loader:
            for _ in range(20_000):
                a = torch.tanh(a @ a)
                if loader.pending.done():
                    arrived_during_step += 1
                    break
        resumes = [arrived for name, step, arrived in loader.events if name == "resume" and step > 0]
    return {"arrived": sum(resumes), "resumes": len(resumes), "during_step": arrived_during_step}


def check_early_exit(comm: MPI.Comm) -> dict:
    stream = make_stream(comm.rank, 20, False)
    with DistributedRehearsalBuffer(64, {"x": ((6,), torch.float32)}, comm=comm, timeout=20) as dbuf:
        for step, _ in enumerate(RehearsalLoader(stream, dbuf, representatives=R)):
            if step == 5:
                break
        try:
            with DistributedRehearsalBuffer(64, {"x": ((6,), torch.float32)}, comm=comm, timeout=20) as inner:
                for step, _ in enumerate(RehearsalLoader(stream, inner, representatives=R)):
                    if step == 3:
                        raise KeyError("boom")
        except KeyError:
            pass
    return {"exited": True}


def _tensors(batch: tuple) -> list[torch.Tensor]:
    x, y, w = batch
    return [*(x.values() if isinstance(x, dict) else [x]), y, w]


def _to_device(t, device: str):
    return {n: v.to(device) for n, v in t.items()} if isinstance(t, dict) else t.to(device)


def _to_cpu(batch: tuple) -> tuple:
    x, y, w = batch
    x = {n: t.cpu() for n, t in x.items()} if isinstance(x, dict) else x.cpu()
    return x, y.cpu(), w.cpu()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=["single", "multi", "overlap", "early_exit", "slow_side_stream"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--input-device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if args.check == "slow_side_stream":
        result = check_slow_side_stream(comm)
    elif args.check == "overlap":
        result = check_overlap(comm)
    elif args.check == "early_exit":
        result = check_early_exit(comm)
    else:
        result = check_batches(comm, args.check == "multi", args.device, args.input_device)
    print(json.dumps({"rank": comm.rank, "ok": True, **result}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
