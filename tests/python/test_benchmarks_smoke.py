"""benchmarks/local_buffer.py --quick runs and prints its comparison table (no speed checks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "local_buffer.py"


def test_local_buffer_benchmark_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for column in (
        "reverie/s",
        "GB/s",
        "copy GB/s",
        "python/s",
        "torchrl/s",
        "rev/copy",
        "rev/python",
        "rev/torchrl",
    ):
        assert column in out, f"missing column {column!r}:\n{out}"
    for row in ("add    3x32x32", "add    3x224x224", "sample 3x32x32", "sample 3x224x224"):
        assert row in out, f"missing row {row!r}:\n{out}"
    assert "Targets" in out
