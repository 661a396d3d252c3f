"""``--deterministic``: two 2-rank runs (mpiexec -n 2) with the same seed give the same
accuracy matrices (inserts and draws at defined points). Digits, 2 tasks: rehearsal with 4
epochs (~25 s on 2 cores); DER and DER++ in one launch (launching costs more than their
training), 2 epochs, ``--replay past --replay-draws passes`` so that the commit at the task
boundary is in step too (~30 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_launch import MPIEXEC
from mpi_launch import have_module as _have

#: strategies run in one launch -> their options
CASES = {
    "rehearsal": ["--epochs", "4", "--lr", "0.05"],
    "der,derpp": ["--epochs", "2", "--replay", "past", "--replay-draws", "passes"],
}


def _matrices(strategies: str, out: Path) -> dict[str, np.ndarray]:
    cmd = [
        sys.executable, "-m", "reverie.cli", "compare", "--strategies", strategies, "--deterministic", "true",
        "--dataset", "digits", "--tasks", "2", *CASES[strategies], "--seed", "3",
        "--ranks", "2", "--mpiexec", MPIEXEC or "", "--progress", "false", "--out", str(out), "--timeout", "240",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["world_size"] == 2 and doc["config"]["deterministic"] is True
    return {
        name: np.array(doc["strategies"][name]["accuracy_matrix_top1"], dtype=float)
        for name in strategies.split(",")
    }


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpich mpi4py)")
@pytest.mark.skipif(not (_have("mpi4py") and _have("sklearn")), reason="needs mpi4py and scikit-learn")
@pytest.mark.parametrize("strategies", list(CASES))
def test_deterministic_runs_repeat_exactly(strategies: str, tmp_path: Path) -> None:
    pytest.importorskip("reverie.loader", reason="reverie's compiled core is not built")
    first, second = _matrices(strategies, tmp_path / "a"), _matrices(strategies, tmp_path / "b")
    for name in first:
        assert np.array_equal(first[name], second[name], equal_nan=True), (
            f"{name}\n{first[name]}\n{second[name]}"
        )
    if "rehearsal" in first:
        m = first["rehearsal"]
        assert m[1, 0] > 0.5 and m[1, 1] > 0.5, f"the runs should learn something: {m}"
