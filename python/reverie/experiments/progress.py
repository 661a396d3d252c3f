"""Progress of the training loops on rank 0: tqdm bars on a terminal, plain lines otherwise.

A bar redrawn with carriage returns makes a log file unreadable (every redraw stays in the
file), so when the output goes to a file or a pipe each loop prints a line at most every
``LINE_INTERVAL_S`` seconds, and one when it ends.

The ranks' output goes through the launcher's pipes, so a rank cannot see the user's
terminal: the launching process decides and passes the answer down in ``BARS_ENV``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

#: "1": draw bars, "0": print lines; unset: bars when stderr is a terminal.
BARS_ENV = "REVERIE_PROGRESS_BARS"
LINE_INTERVAL_S = 10.0


def bars_wanted(stream: TextIO | None = None, env: dict[str, str] | None = None) -> bool:
    """Whether progress should be drawn as bars: ``BARS_ENV`` if set, else ``stream.isatty()``."""
    env = os.environ if env is None else env
    if env.get(BARS_ENV) in ("0", "1"):
        return env[BARS_ENV] == "1"
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_lines(
    iterable: Iterable[Any],
    desc: str,
    total: int | None = None,
    stream: TextIO | None = None,
    interval: float = LINE_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Any]:
    """Yields ``iterable``'s items; after an item, prints ``desc: n/total (s)`` if ``interval``
    seconds passed since the last line, and always after the last one."""
    start = last = clock()
    count = 0
    for count, item in enumerate(iterable, 1):
        yield item
        now = clock()
        if now - last >= interval or count == total:
            print(
                f"{desc}: {count}/{total if total else '?'} ({now - start:.0f} s)",
                file=stream or sys.stderr,
                flush=True,
            )
            last = now


def progress_factory(enabled: bool) -> Callable[..., Iterable[Any]]:
    """``progress(iterable, desc, total=None, leave=False)``: bars, lines or silence."""
    bars = bars_wanted()

    def progress(
        iterable: Iterable[Any], desc: str, total: int | None = None, leave: bool = False
    ) -> Iterable[Any]:
        if not enabled:
            return iterable
        if not bars:
            return progress_lines(iterable, desc, total)
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)

    return progress
