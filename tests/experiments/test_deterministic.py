"""``--deterministic``: two 2-rank rehearsal runs (mpiexec -n 2) with the same seed give the
same accuracy matrices (inserts and draws at defined points). Digits, 2 tasks, 4 epochs;
~25 s on 2 cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_launch import MPIEXEC
from mpi_launch import have_module as _have


def _matrix(out: Path) -> np.ndarray:
    cmd = [
        sys.executable, "-m", "reverie.cli", "experiment", "--strategy", "rehearsal", "--deterministic", "true",
        "--dataset", "digits", "--tasks", "2", "--epochs", "4", "--lr", "0.05", "--seed", "3",
        "--ranks", "2", "--mpiexec", MPIEXEC or "", "--progress", "false", "--out", str(out), "--timeout", "240",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["world_size"] == 2 and doc["config"]["deterministic"] is True
    return np.array(doc["strategies"]["rehearsal"]["accuracy_matrix_top1"], dtype=float)


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpich mpi4py)")
@pytest.mark.skipif(not (_have("mpi4py") and _have("sklearn")), reason="needs mpi4py and scikit-learn")
def test_deterministic_runs_repeat_exactly(tmp_path: Path) -> None:
    pytest.importorskip("reverie.loader", reason="reverie's compiled core is not built")
    first, second = _matrix(tmp_path / "a"), _matrix(tmp_path / "b")
    assert np.array_equal(first, second, equal_nan=True), f"{first}\n{second}"
    assert first[1, 0] > 0.5 and first[1, 1] > 0.5, f"the runs should learn something: {first}"
