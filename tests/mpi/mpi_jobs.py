"""Launching real multi-rank jobs: ``mpiexec -n N python <script> ...`` with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mpi_launch import find_mpiexec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAUNCH_TIMEOUT = 180.0  # seconds for one whole job; the scenarios themselves take ~10-20 s
ENGINES = ["mpi", "thallium"]
RANKS = [2, 4]


def require_engine(engine: str) -> None:
    """Skips unless mpiexec, mpi4py and the engine are all available."""
    from reverie import _core

    if find_mpiexec() is None:
        pytest.skip("mpiexec not found next to sys.executable or on PATH")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed")
    if engine == "mpi" and not _core.HAVE_MPI:
        pytest.skip("Reverie built without MPI")
    if engine == "thallium" and not _core.HAVE_THALLIUM:
        pytest.skip("Reverie built without Thallium")


def mpirun(
    n: int, script: str, *args: str, timeout: float = LAUNCH_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs `script` (a path relative to the repository) on n ranks, with `env` added to the
    environment; never hangs past timeout."""
    mpiexec = find_mpiexec()
    assert mpiexec is not None
    cmd = [mpiexec, "-n", str(n), sys.executable, str(REPO / script), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(
            f"{' '.join(cmd)} did not finish within {timeout} s (hang?)\n{out[-3000:]}\n{err[-3000:]}"
        )


def result_line(proc: subprocess.CompletedProcess, prefix: str = "RESULT ") -> dict[str, Any]:
    """The JSON result a job printed on rank 0, after checking it exited cleanly."""
    tail = f"\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"exit code {proc.returncode}{tail}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, f"expected one {prefix!r} line{tail}"
    return json.loads(lines[0][len(prefix) :])


_jobs: dict[tuple[str, int, str], dict[str, Any]] = {}


def cached_job(script: str, ranks: int, engine: str, timeout: float = LAUNCH_TIMEOUT) -> dict[str, Any]:
    """Every scenario of `script` on `ranks` ranks with `engine`: run once per process, then
    cached (starting ranks costs seconds). Returns {scenario: [per-rank results]}; fails the
    calling test if the job failed."""
    require_engine(engine)
    key = (script, ranks, engine)
    if key not in _jobs:
        proc = mpirun(ranks, script, "--engine", engine, timeout=timeout)
        try:
            _jobs[key] = result_line(proc)
        except AssertionError as e:
            _jobs[key] = {"error": str(e)}
    result = _jobs[key]
    if "error" in result:
        pytest.fail(result["error"])
    assert result["size"] == ranks
    return result["scenarios"]
