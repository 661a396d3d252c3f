"""The ``reverie`` command line.

``reverie experiment``  runs one strategy on a continual-learning scenario;
``reverie compare``     runs several (default: incremental, scratch, rehearsal) on the same
setup and prints rehearsal's accuracy as % of scratch and its time as x incremental.

Both start ``--ranks`` ranks with mpiexec (or srun) running ``python -m
reverie.experiments.run``; when this process already is one rank of a launch they just run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """The ``reverie`` argument parser with its subcommands."""
    from reverie.experiments.config import STRATEGIES, add_experiment_options

    parser = argparse.ArgumentParser(
        prog="reverie", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    exp = sub.add_parser(
        "experiment",
        help="run one strategy on a continual-learning scenario over several ranks",
        description="Run one continual-learning strategy over several data-parallel ranks.",
    )
    exp.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=argparse.SUPPRESS,
        help="strategy to run (default: rehearsal)",
    )
    add_experiment_options(exp, skip=("strategies",))
    cmp = sub.add_parser(
        "compare",
        help="run incremental, scratch and rehearsal (and more) side by side",
        description="Run several strategies on the same setup and compare accuracy and time.",
    )
    add_experiment_options(cmp)
    for p in (exp, cmp):
        p.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds before the launched ranks are stopped (default: no limit)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reverie`` command; returns the exit status."""
    from reverie.experiments.config import resolve_config
    from reverie.experiments.launch import choose_launcher, launch
    from reverie.experiments.process_group import inside_launch
    from reverie.experiments.run import default_out_dir, run_experiment

    ns = build_parser().parse_args(argv)
    given: dict[str, Any] = dict(vars(ns))
    command = given.pop("command")
    timeout = given.pop("timeout", None)
    config_file = given.pop("config", None)
    base: dict[str, Any] = {}
    if command == "experiment":
        base["strategies"] = ["rehearsal"]
        if "strategy" in given:
            given["strategies"] = [given.pop("strategy")]
    try:
        cfg = resolve_config(given, config_file, base)
        launcher = choose_launcher(cfg)
        if inside_launch() or launcher == "none":
            run_experiment(cfg)
            return 0
        if cfg.out is None:
            cfg.out = str(default_out_dir(cfg))
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "config.json"
        config_path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        return launch(cfg, config_path, launcher, timeout)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
