"""One rank of an Avalanche run on the blobs benchmark (tests/integrations/blobs.py).

    mpiexec -n 2 python tests/integrations/avalanche_worker.py --engine mpi [--plugin naive]
    torchrun --nproc_per_node 2 tests/integrations/avalanche_worker.py --engine thallium

Avalanche's distributed mode (``init_distributed``; each rank trains on its shard of every
experience) with the model in DDP. Rank 1 offers 2 candidates per step, rank 0 all its
rows, so the ranks' buffers fill unequally. Each rank prints one JSON line: accuracy on the
old classes, the buffers' committed sizes during each experience (sizes change only at
experience ends with ``replay="past"``), and how many replayed rows came from each owner
rank in each experience. ``--checkpoint PATH`` then saves (every rank, its own file), loads
into a new strategy and reports the restored buffer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from blobs import OLD_CLASSES, RecordingPlugin, accuracy, contents, make_benchmark, make_model, make_strategy

from reverie.integrations.avalanche import ReveriePlugin, init_distributed

# isort: split
import torch
from avalanche.checkpointing import maybe_load_checkpoint, save_checkpoint
from avalanche.distributed import DistributedHelper

BATCH, R = 16, 16  # per rank


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--plugin", choices=["reverie", "naive"], default="reverie")
    p.add_argument("--engine", default="mpi")
    p.add_argument("--checkpoint")
    args = p.parse_args()
    init_distributed(random_seed=0)
    rank, world = DistributedHelper.rank, DistributedHelper.world_size
    torch.set_num_threads(1)
    benchmark, x_test, y_test = make_benchmark()
    model = DistributedHelper.wrap_model(make_model())
    plugins: list[Any] = []
    if args.plugin == "reverie":
        candidates = None if rank == 0 else 2
        plugins = [
            RecordingPlugin(buffer_size=200, representatives=R, candidates=candidates, engine=args.engine)
        ]
    strategy = make_strategy(model, plugins, batch=BATCH)
    sizes = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        if plugins:
            buf = plugins[0].buffer
            sizes.append(buf.bootstrap.allgather(len(buf), "sizes"))
    out: dict[str, Any] = {
        "rank": rank,
        "world": world,
        "old_accuracy": accuracy(model, x_test, y_test, OLD_CLASSES),
    }
    if plugins:
        plugin = plugins[0]
        out.update(engine=plugin.buffer.engine, sizes=sizes, owners={e: o for e, o in plugin.owners.items()})
    if args.checkpoint:
        out["checkpoint"] = checkpoint_round_trip(strategy, plugins[0], f"{args.checkpoint}-{rank}.pkl")
    print(json.dumps(out), flush=True)
    return 0


def checkpoint_round_trip(strategy: Any, plugin: ReveriePlugin, path: str) -> dict[str, Any]:
    """Saves (every rank), loads into a fresh strategy, trains one more experience and
    reports the buffer before and after. The optimizer is left out: Avalanche 0.6 cannot
    pickle torch 2.13's SGD (docs/avalanche.md)."""
    before = contents(plugin.buffer)
    save_checkpoint(strategy, path, exclude=["optimizer"])
    plugin.close()
    fresh = make_strategy(DistributedHelper.wrap_model(make_model()), [RecordingPlugin(buffer_size=999)])
    fresh, next_exp = maybe_load_checkpoint(fresh, path)
    (restored,) = [p for p in fresh.plugins if isinstance(p, ReveriePlugin)]
    benchmark, _, _ = make_benchmark()
    fresh.optimizer = torch.optim.SGD(fresh.model.parameters(), lr=0.05)
    fresh.train(benchmark.train_stream[0])  # opens (restores) the buffer at its first step
    restored.close()
    return {
        "next_exp": next_exp,
        "before": before,
        "after": restored.opened,
        "buffer_size": restored.buffer_size,
    }


if __name__ == "__main__":
    sys.exit(main())
