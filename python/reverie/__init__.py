"""Reverie: distributed rehearsal buffers for data-parallel continual learning with PyTorch."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "DistributedRehearsalBuffer",
    "DrawHandle",
    "RehearsalBuffer",
    "RehearsalLoader",
    "Samples",
    "__version__",
]
__version__ = "0.1.0"

# Every name is imported on first use: importing reverie must not initialise MPI, and the
# command line (`reverie --help`, option errors) must not wait for torch to import.
_HOMES = {
    "RehearsalBuffer": "reverie.buffer",
    "Samples": "reverie.samples",
    "DistributedRehearsalBuffer": "reverie.distributed",
    "DrawHandle": "reverie.distributed",
    "RehearsalLoader": "reverie.loader",
    "concat_draw": "reverie.loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'reverie' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
