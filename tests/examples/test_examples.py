"""The examples run as users would start them (``mpiexec -n 2``) and rehearsal keeps old classes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mpi_launch import MPIEXEC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def final_accuracy(script: str) -> float:
    """Runs an example on 2 ranks; returns its accuracy on all classes after the last task (%)."""
    if MPIEXEC is None:
        pytest.skip("mpiexec not found (pip install mpich mpi4py)")
    cmd = [MPIEXEC, "-n", "2", sys.executable, str(EXAMPLES / script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.findall(r"task 4: accuracy on classes seen so far ([\d.]+)%", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return float(found[-1])


def test_ddp_example() -> None:
    # Training on the last task alone would leave ~20% (2 of 10 classes).
    assert final_accuracy("ddp_rehearsal.py") > 80.0


@pytest.mark.skipif(
    importlib.util.find_spec("horovod") is None,
    reason="Horovod not installed (README: 'Horovod with torch 2.x' says how to build it)",
)
def test_horovod_example() -> None:
    assert final_accuracy("horovod_rehearsal.py") > 80.0
