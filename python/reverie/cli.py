"""The reverie command line.

  reverie experiment   runs one strategy on a continual-learning scenario
  reverie compare      runs several (default: incremental, scratch, rehearsal) on the same
                       setup and prints rehearsal's accuracy as % of scratch and its time
                       as x incremental
  reverie clean-shm    removes shared-memory files that crashed MPI jobs left in /dev/shm

experiment and compare start --ranks ranks with mpiexec (or srun); when this process
already is one rank of a launch they just run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

PROG = "reverie"


class UsageError(Exception):
    """An error in what the user asked for: reported as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument the way a bad config value is reported: one
    line, ``reverie: error: ...``, instead of the usage block plus the message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``reverie`` argument parser with its subcommands (imports no torch)."""
    from reverie.experiments.config import STRATEGIES, add_experiment_options

    parser = OneLineParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
    from reverie.shm_cleanup import add_clean_shm_parser

    add_clean_shm_parser(sub)
    return parser


def _experiment_config(given: dict[str, Any], command: str) -> Any:
    """The validated ExperimentConfig of the parsed options (raises ValueError)."""
    from reverie.experiments.config import resolve_config

    config_file = given.pop("config", None)
    base: dict[str, Any] = {}
    if command == "experiment":
        base["strategies"] = ["rehearsal"]
        if "strategy" in given:
            given["strategies"] = [given.pop("strategy")]
    return resolve_config(given, config_file, base)


def _prepare_experiment(given: dict[str, Any], command: str) -> Callable[[], int]:
    """Checks everything a run needs before any rank starts (options, optional dependencies,
    output folder, launcher) and returns the run. Raises ValueError / FileNotFoundError."""
    from reverie.experiments.preflight import check_engine, check_extras, check_out_dir

    timeout = given.pop("timeout", None)
    cfg = _experiment_config(given, command)
    check_extras(cfg)
    check_engine(cfg)
    from reverie.experiments.launch import choose_launcher, find_mpiexec, launch
    from reverie.experiments.process_group import inside_launch  # imports torch

    launcher = choose_launcher(cfg)
    if inside_launch() or launcher == "none":
        if cfg.out is not None:
            check_out_dir(Path(cfg.out))
        return lambda: _run_here(cfg)
    if launcher == "mpiexec":
        find_mpiexec(cfg.mpiexec)
    if cfg.out is None:
        from reverie.experiments.run import default_out_dir

        cfg.out = str(default_out_dir(cfg))
    config_path = check_out_dir(Path(cfg.out)) / "config.json"
    config_path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return lambda: launch(cfg, config_path, launcher, timeout)


def _run_here(cfg: Any) -> int:
    from reverie.experiments.run import run_experiment

    run_experiment(cfg)
    return 0


def fail(message: str) -> int:
    """Prints ``reverie: error: <message>`` (one line) and returns the exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reverie`` command; returns the exit status."""
    try:
        ns = build_parser().parse_args(argv)
        given: dict[str, Any] = dict(vars(ns))
        command = given.pop("command")
        if command == "clean-shm":
            from reverie.shm_cleanup import run_clean_shm

            return run_clean_shm(ns)
        run = _prepare_experiment(given, command)
    except (UsageError, ValueError, FileNotFoundError) as e:
        return fail(str(e))
    return run()


if __name__ == "__main__":
    sys.exit(main())
