"""Runs under mpiexec. Modes:
  exact DIR ENGINE    run A saves halfway and goes on; run B loads and replays: same draws.
  save DIR ENGINE     fill a buffer (class-tagged data) and save it.
  reload DIR ENGINE   load a checkpoint written by a different number of ranks; report classes.
Prints one JSON line per rank.
"""

from __future__ import annotations

import json
import sys

import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer

FIELDS = {"x": ((5,), torch.float32)}


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(rank * 10_000 + step)
    y = torch.randint(0, 6, (16,), generator=g)
    x = torch.randn(16, 5, generator=g)
    x[:, 0] = y.float()
    return x, y, torch.rand(16, generator=g)


def replay(dbuf: DistributedRehearsalBuffer, first: int, last: int) -> list[list[float]]:
    out = []
    for step in range(first, last):
        x, y, w = batch(dbuf.rank, step)
        dbuf.add(x, y, w)
        dbuf.flush()
        MPI.COMM_WORLD.Barrier()  # same global state at every draw in both runs
        s = dbuf.get_remote_samples(9).wait()
        MPI.COMM_WORLD.Barrier()  # and no rank adds again while a peer still reads its buffer
        out.append(s["x"].flatten().tolist() + s.labels.tolist() + s.weights.tolist() + s.ranks.tolist())
    return out


def exact(directory: str, engine: str) -> dict:
    comm = MPI.COMM_WORLD
    with DistributedRehearsalBuffer(
        48, FIELDS, candidates=6, seed=11, comm=comm, engine=engine, timeout=20
    ) as a:
        replay(a, 0, 20)
        a.save(directory)
        uninterrupted = replay(a, 20, 40)
    with DistributedRehearsalBuffer.load(directory, comm=comm, engine=engine, timeout=20) as b:
        restored = replay(b, 20, 40)
    return {"same_draws": uninterrupted == restored, "draws": len(restored)}


def save(directory: str, engine: str) -> dict:
    comm = MPI.COMM_WORLD
    with DistributedRehearsalBuffer(
        60, FIELDS, num_classes=6, seed=2, comm=comm, engine=engine, timeout=20
    ) as d:
        for step in range(30):
            x, y, w = batch(comm.rank, step)
            d.add(x, y, w)
        d.save(directory)
        return {"size": len(d), "classes": d.class_counts()}


def reload(directory: str, engine: str) -> dict:
    comm = MPI.COMM_WORLD
    with DistributedRehearsalBuffer.load(directory, comm=comm, engine=engine, timeout=20) as d:
        s = d.get_remote_samples(8).wait()
        consistent = bool(torch.equal(s["x"][:, 0].long(), s.labels))
        return {"size": len(d), "classes": d.class_counts(), "consistent": consistent}


if __name__ == "__main__":
    mode, directory, engine = sys.argv[1], sys.argv[2], sys.argv[3]
    result = {"exact": exact, "save": save, "reload": reload}[mode](directory, engine)
    sys.stdout.write(json.dumps({"rank": MPI.COMM_WORLD.rank, **result}) + "\n")
