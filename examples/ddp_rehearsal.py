"""Data-parallel continual learning with PyTorch DDP and a Reverie rehearsal buffer.

Run on CPU with two ranks (gloo):

    mpiexec -n 2 python examples/ddp_rehearsal.py

Each rank trains on its own shard of a class-incremental stream (5 tasks of 2 classes of
synthetic 32-dimensional data). ``RehearsalLoader`` offers candidates from every minibatch
to this rank's part of the global buffer and mixes ``r`` representatives, drawn uniformly
from all ranks' buffers, into each minibatch. DDP averages the gradients. On GPUs, use
``backend="nccl"`` and ``device="cuda:<local rank>"``; nothing else changes.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mpi4py import MPI
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from reverie import DistributedRehearsalBuffer, RehearsalLoader

TASKS, CLASSES_PER_TASK, DIM = 5, 2, 32
SAMPLES_PER_CLASS, BATCH, REPRESENTATIVES, EPOCHS = 400, 32, 32, 2


def init_torch_distributed(comm: MPI.Comm) -> tuple[int, int]:
    """gloo process group over the MPI job: rank 0 picks a free port and broadcasts it."""
    rank, world = comm.Get_rank(), comm.Get_size()
    port = None
    if rank == 0:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(comm.bcast(port, root=0))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    return rank, world


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian blobs: x [n, DIM] float32, y [n] int64 for train and test (same on every rank)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(TASKS * CLASSES_PER_TASK, DIM, generator=g) * 1.5
    y = torch.arange(TASKS * CLASSES_PER_TASK).repeat_interleave(SAMPLES_PER_CLASS)
    x = centers[y] + torch.randn(len(y), DIM, generator=g)
    test = torch.rand(len(y), generator=g) < 0.2
    return x[~test], y[~test], x[test], y[test]


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, world = init_torch_distributed(comm)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = make_data()
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 10)))
    buffer = DistributedRehearsalBuffer(
        capacity=200,
        fields={"x": ((DIM,), torch.float32)},
        candidates=16,
        seed=0,
        comm=comm,
        max_representatives=REPRESENTATIVES,
    )
    with buffer:
        for task in range(TASKS):
            classes = list(range(task * CLASSES_PER_TASK, (task + 1) * CLASSES_PER_TASK))
            mine = torch.nonzero(torch.isin(y_train, torch.tensor(classes))).flatten()[rank::world]
            mine = mine[: len(mine) - len(mine) % BATCH]  # same number of steps on every rank
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            for epoch in range(EPOCHS):
                order = mine[torch.randperm(len(mine), generator=torch.Generator().manual_seed(epoch))]
                batches = [(x_train[i], y_train[i]) for i in order.split(BATCH)]
                for x, y, w in RehearsalLoader(batches, buffer, representatives=REPRESENTATIVES):
                    loss = (F.cross_entropy(model(x), y, reduction="none") * w).mean()  # x: [b + r', DIM]
                    optimizer.zero_grad()
                    loss.backward()  # DDP all-reduces the gradients here
                    optimizer.step()
            buffer.flush()
            seen = torch.isin(y_test, torch.arange((task + 1) * CLASSES_PER_TASK))
            with torch.no_grad():
                acc = (model.module(x_test[seen]).argmax(1) == y_test[seen]).float().mean().item()
            if rank == 0:
                print(
                    f"task {task}: accuracy on classes seen so far {100 * acc:.1f}%, "
                    f"global buffer {buffer.global_size()} samples",
                    flush=True,
                )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
