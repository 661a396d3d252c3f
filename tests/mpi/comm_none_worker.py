"""One rank of `mpiexec -n 2`: builds a buffer with comm=None or comm=COMM_WORLD and prints,
as JSON, its world size and the warnings the construction raised."""

from __future__ import annotations

import json
import sys
import warnings

import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    comm = None if sys.argv[1] == "none" else MPI.COMM_WORLD
    buf = DistributedRehearsalBuffer(8, {"x": ((2,), torch.float32)}, num_classes=2, comm=comm, timeout=60)
result = {
    "rank": MPI.COMM_WORLD.Get_rank(),
    "size": buf.world_size,
    "warnings": [str(w.message) for w in caught],
}
# One write per line: under PYTHONUNBUFFERED, print's pieces of two ranks could interleave.
sys.stdout.write(f"RESULT {json.dumps(result)}\n")
sys.stdout.flush()
buf.close()
