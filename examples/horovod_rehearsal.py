"""Continual learning with Horovod and a Reverie rehearsal buffer.

    horovodrun -np 2 python examples/horovod_rehearsal.py      # or: mpiexec -n 2 python ...

Horovod averages gradients (``hvd.DistributedOptimizer``); Reverie's buffer runs over the
same MPI job (``mpi4py.MPI.COMM_WORLD``). The stream is the one of ``ddp_rehearsal.py``:
5 tasks of 2 classes of synthetic data, each rank training on its own shard.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

try:
    import horovod.torch as hvd
except ImportError:
    sys.exit(
        "horovod_rehearsal.py needs Horovod with PyTorch support: "
        "HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 pip install horovod  (see horovod.ai)"
    )

from mpi4py import MPI

from reverie import DistributedRehearsalBuffer, RehearsalLoader

TASKS, CLASSES_PER_TASK, DIM = 5, 2, 32
SAMPLES_PER_CLASS, BATCH, REPRESENTATIVES, EPOCHS = 400, 32, 32, 2


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian blobs: x [n, DIM] float32, y [n] int64 for train and test (same on every rank)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(TASKS * CLASSES_PER_TASK, DIM, generator=g) * 1.5
    y = torch.arange(TASKS * CLASSES_PER_TASK).repeat_interleave(SAMPLES_PER_CLASS)
    x = centers[y] + torch.randn(len(y), DIM, generator=g)
    test = torch.rand(len(y), generator=g) < 0.2
    return x[~test], y[~test], x[test], y[test]


def main() -> None:
    hvd.init()
    rank, world = hvd.rank(), hvd.size()
    device = torch.device("cuda", hvd.local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    x_train, y_train, x_test, y_test = make_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 10)).to(device)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    buffer = DistributedRehearsalBuffer(
        capacity=200,
        fields={"x": ((DIM,), torch.float32)},
        candidates=16,
        seed=0,
        comm=MPI.COMM_WORLD,
        max_representatives=REPRESENTATIVES,
    )
    # One DistributedOptimizer for the whole run: each one hooks the parameters' gradients, so a second
    # one would all-reduce every gradient twice under the same name, which Horovod rejects.
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    optimizer = hvd.DistributedOptimizer(base, named_parameters=model.named_parameters())
    with buffer:
        for task in range(TASKS):
            classes = torch.arange(task * CLASSES_PER_TASK, (task + 1) * CLASSES_PER_TASK)
            mine = torch.nonzero(torch.isin(y_train, classes)).flatten()[rank::world]
            mine = mine[: len(mine) - len(mine) % BATCH]  # same number of steps on every rank
            optimizer.state.clear()  # fresh momentum for each task, as a new SGD would have
            for epoch in range(EPOCHS):
                order = mine[torch.randperm(len(mine), generator=torch.Generator().manual_seed(epoch))]
                batches = [(x_train[i], y_train[i]) for i in order.split(BATCH)]
                for x, y, w in RehearsalLoader(
                    batches, buffer, representatives=REPRESENTATIVES, device=device
                ):
                    loss = (F.cross_entropy(model(x), y, reduction="none") * w).mean()  # x: [b + r', DIM]
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()  # Horovod all-reduces the gradients
            buffer.flush()
            seen = torch.isin(y_test, torch.arange((task + 1) * CLASSES_PER_TASK))
            with torch.no_grad():
                pred = model(x_test[seen].to(device)).argmax(1).cpu()
            acc = hvd.allreduce(torch.tensor((pred == y_test[seen]).float().mean().item()), name=f"acc{task}")
            if rank == 0:
                print(f"task {task}: accuracy on classes seen so far {100 * acc.item():.1f}%", flush=True)


if __name__ == "__main__":
    main()
