"""Another process's run state, read from /proc (Linux): fault tests wait for a victim to
die or stop, and for survivors to end, without sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Container
from pathlib import Path

DEAD = ("Z", "X")  # a zombie, or dead and being reaped


def proc_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (R, S, T, Z, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def wait_for_state(pid: int, states: Container[str], timeout: float, poll: float = 0.01) -> bool:
    """Polls until process ``pid`` is in one of ``states`` or gone; False if ``timeout``
    seconds passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = proc_state(pid)
        if state is None or state in states:
            return True
        time.sleep(poll)  # polling a condition, bounded by the deadline
    return False
