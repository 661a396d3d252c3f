"""Per-rank driver: ``python -m reverie.experiments.run [options]`` on every rank.

Joins the ranks (torch.distributed over the launch), builds the scenario, splits every
global batch across ranks, runs each requested strategy over the task sequence with an evaluation after
every task, and on rank 0 writes ``results.json``, ``results.csv`` and the plots into the
output folder and prints the summary table. Normally started by ``reverie experiment`` /
``reverie compare`` under mpiexec; it also runs as a single rank.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .config import ExperimentConfig, add_experiment_options, check_rank_split, resolve_config
from .datasets import DatasetSplits, load_dataset
from .evaluation import evaluate_tasks
from .plots import write_plots
from .process_group import ProcessGroup, end_rank, init_process_group
from .progress import progress_factory
from .reports import StrategyResult, comparison_lines, results_document, summary_table, write_csv, write_json
from .scenarios import Task, make_scenario
from .strategies import TrainingContext, make_strategy


def default_out_dir(cfg: ExperimentConfig, base: str | Path = "runs") -> Path:
    """A new folder name ``<base>/<YYYYmmdd-HHMMSS>-<dataset>-<scenario>[-k]`` (not created)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{stamp}-{cfg.dataset}-{cfg.scenario}"
    k = 1
    while path.exists():
        k += 1
        path = Path(base) / f"{stamp}-{cfg.dataset}-{cfg.scenario}-{k}"
    return path


def _progress_factory(enabled: bool) -> Any:
    return progress_factory(enabled)  # bars on a terminal, plain lines in a log


def _say(group: ProcessGroup, text: str) -> None:
    if group.rank == 0:
        try:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stdout)
        except ImportError:  # pragma: no cover
            print(text, flush=True)
        sys.stdout.flush()


def _load_data(cfg: ExperimentConfig, group: ProcessGroup) -> DatasetSplits:
    """Rank 0 loads (and caches) first so the other ranks only read the cache."""
    kwargs = {
        "data_root": cfg.data_root,
        "mnist1d_samples": cfg.mnist1d_samples,
        "mnist_channels": cfg.mnist_channels,
        "synthetic_samples": cfg.synthetic_samples,
        "image_size": cfg.image_size,
    }
    data = load_dataset(cfg.dataset, **kwargs) if group.rank == 0 else None
    group.barrier()
    return data if data is not None else load_dataset(cfg.dataset, **kwargs)


def _test_shards(tasks: Sequence[Task], group: ProcessGroup) -> list[np.ndarray]:
    """This rank's part of every task's test split (all samples are covered, none twice)."""
    return [np.array_split(t.test_indices, group.world_size)[group.rank] for t in tasks]


def run_strategy(name: str, ctx: TrainingContext, test_shards: list[np.ndarray]) -> StrategyResult:
    """Train strategy ``name`` over all tasks, evaluating after each; collective over ranks."""
    group, cfg = ctx.group, ctx.config
    n_tasks = len(ctx.tasks)
    res = StrategyResult.empty(name, n_tasks)
    group.barrier()
    t0 = time.perf_counter()
    strategy = make_strategy(name, ctx)
    group.barrier()
    res.setup_time = time.perf_counter() - t0
    try:
        for t in ctx.progress(range(n_tasks), desc=f"{name}: tasks", total=n_tasks, leave=False):
            group.barrier()
            t0 = time.perf_counter()
            strategy.train_task(t)
            group.barrier()
            res.train_time_per_task.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            top1, top5 = evaluate_tasks(
                strategy.eval_model, ctx.data.test, test_shards[: t + 1], group.device, cfg.eval_batch_size
            )
            res.eval_time_per_task.append(time.perf_counter() - t0)
            res.top1[t, : t + 1] = top1
            res.top5[t, : t + 1] = top5
            classes = list(ctx.tasks[t].classes) if cfg.scenario == "class" else "all"
            _say(
                group,
                f"{name:>11} task {t}: classes {classes}"
                f" | mean top-1 {100 * float(np.mean(top1)):5.1f}% | top-5 {100 * float(np.mean(top5)):5.1f}%"
                f" | train {res.train_time_per_task[-1]:6.2f} s",
            )
        res.buffer = strategy.buffer_info()
    finally:
        strategy.close()
    return res


def warm_up(ctx: TrainingContext, test_shards: list[np.ndarray]) -> None:
    """Untimed: build a DDP model, take one step and evaluate once, so that one-off costs
    (gloo connections, allocator and kernel warm-up) are not charged to the first strategy."""
    model = make_strategy("incremental", ctx)
    x, y = next(iter(model.batches(ctx.train_indices[0], salt=999_999)))
    model.step(x, y)
    evaluate_tasks(
        model.eval_model, ctx.data.test, test_shards[:1], ctx.group.device, ctx.config.eval_batch_size
    )
    model.close()
    ctx.group.barrier()


def _meta(group: ProcessGroup, data: DatasetSplits, tasks: Sequence[Task]) -> dict[str, Any]:
    try:
        import reverie

        reverie_info = {
            "version": getattr(reverie, "__version__", None),
            "module": getattr(reverie, "__file__", None),
        }
    except ImportError:  # pragma: no cover
        reverie_info = {}
    return {
        "world_size": group.world_size,
        "device": str(group.device),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "reverie": reverie_info,
        "created": datetime.now().isoformat(timespec="seconds"),
        "dataset_info": {
            "train_samples": len(data.train_labels),
            "test_samples": len(data.test_labels),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        },
        "tasks": [
            {
                "classes": list(t.classes),
                "train_samples": len(t.train_indices),
                "test_samples": len(t.test_indices),
            }
            for t in tasks
        ],
    }


def write_outputs(doc: dict[str, Any], results: dict[str, StrategyResult], out: Path) -> list[Path]:
    """Write results.json, results.csv and the PNG plots into ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(doc, out / "results.json")
    write_csv(results, out / "results.csv")
    return [out / "results.json", out / "results.csv", *write_plots(doc, out)]


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """Run ``cfg`` on this rank (collective). Returns the results document on rank 0, else None."""
    torch.set_num_threads(cfg.threads)
    group = init_process_group(cfg.device)
    try:
        check_rank_split(cfg, group.world_size)  # the launcher may start another count than --ranks
        out_name = [str(cfg.out) if cfg.out else str(default_out_dir(cfg))]
        if group.world_size > 1:
            dist.broadcast_object_list(out_name, src=0)
        out = Path(out_name[0])
        data = _load_data(cfg, group)
        tasks = make_scenario(
            cfg.scenario,
            data.train_labels,
            data.test_labels,
            data.num_classes,
            cfg.tasks,
            cfg.initial_increment,
            cfg.seed,
        )
        ctx = TrainingContext(
            cfg,
            group,
            data,
            tasks,
            [t.train_indices for t in tasks],
            _progress_factory(cfg.progress and group.rank == 0),
        )
        _say(
            group,
            f"reverie experiment: {cfg.dataset}, {cfg.scenario}-incremental, {len(tasks)} tasks, "
            f"{group.world_size} rank(s) on {group.device}, strategies {', '.join(cfg.strategies)}",
        )
        test_shards = _test_shards(tasks, group)
        warm_up(ctx, test_shards)
        results: dict[str, StrategyResult] = {}
        for name in cfg.strategies:
            results[name] = run_strategy(name, ctx, test_shards)
        if group.rank != 0:
            return None
        doc = results_document(results, cfg.to_dict() | {"out": str(out)}, _meta(group, data, tasks))
        paths = write_outputs(doc, results, out)
        print("\n" + summary_table(doc))
        for line in comparison_lines(doc):
            print(line)
        print(f"results: {', '.join(str(p) for p in paths)}", flush=True)
        return doc
    finally:
        group.close()


def build_parser() -> argparse.ArgumentParser:
    """Options of the per-rank driver (the same as ``reverie compare``)."""
    parser = argparse.ArgumentParser(
        prog="python -m reverie.experiments.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reverie.experiments.run``; returns the exit status."""
    ns = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(vars(ns), ns.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    run_experiment(cfg)
    return 0


if __name__ == "__main__":
    end_rank(main())
