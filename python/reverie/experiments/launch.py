"""Starting the ranks: ``mpiexec -n N python -m reverie.experiments.run --config FILE`` (or srun).

The launcher is taken from the environment: ``--mpiexec``, ``$REVERIE_MPIEXEC``, the
``mpiexec`` next to this Python (a virtual environment's MPI), then ``mpiexec`` on PATH.
Inside a Slurm allocation ``auto`` uses ``srun``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .config import ExperimentConfig
from .progress import BARS_ENV, bars_wanted


def find_mpiexec(explicit: str | None = None) -> list[str]:
    """The mpiexec command as an argv prefix; raises ``FileNotFoundError`` when none is found."""
    for cand in (explicit, os.environ.get("REVERIE_MPIEXEC")):
        if cand:
            return shlex.split(cand)
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return [str(here)]
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found:
        return [found]
    raise FileNotFoundError(
        "mpiexec: not found next to this Python nor on PATH; install MPI "
        "(e.g. pip install mpich mpi4py) or pass --mpiexec / --launcher srun"
    )


def choose_launcher(cfg: ExperimentConfig, env: dict[str, str] | None = None) -> str:
    """``mpiexec``, ``srun`` or ``none`` for ``cfg.launcher`` (``auto`` decides from ``env``)."""
    env = dict(os.environ) if env is None else env
    if cfg.launcher != "auto":
        return cfg.launcher
    if cfg.ranks == 1:
        return "none"
    if "SLURM_JOB_ID" in env and shutil.which("srun") and not cfg.mpiexec:
        return "srun"
    return "mpiexec"


def launch_command(cfg: ExperimentConfig, config_file: str | Path, launcher: str) -> list[str]:
    """argv that starts ``cfg.ranks`` ranks of the per-rank driver reading ``config_file``."""
    driver = [sys.executable, "-m", "reverie.experiments.run", "--config", str(config_file)]
    if launcher == "srun":
        return ["srun", "-n", str(cfg.ranks), *driver]
    if launcher == "mpiexec":
        return [*find_mpiexec(cfg.mpiexec), "-n", str(cfg.ranks), *driver]
    raise ValueError(f"launcher: cannot build a command for {launcher!r}")


def launch(
    cfg: ExperimentConfig, config_file: str | Path, launcher: str, timeout: float | None = None
) -> int:
    """Run the ranks and wait; returns the launcher's exit status (124 on timeout)."""
    cmd = launch_command(cfg, config_file, launcher)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault(BARS_ENV, "1" if bars_wanted() else "0")  # the ranks only see pipes
    try:
        return subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"error: the ranks did not finish within {timeout} s", file=sys.stderr)
        return 124
