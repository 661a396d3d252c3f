"""Reverie: distributed rehearsal buffers for data-parallel continual learning with PyTorch."""

from reverie.buffer import RehearsalBuffer
from reverie.samples import Samples

__all__ = ["RehearsalBuffer", "Samples", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: importing reverie must not initialise MPI
    if name in ("DistributedRehearsalBuffer", "DrawHandle"):
        from reverie import distributed

        return getattr(distributed, name)
    if name in ("RehearsalLoader", "concat_draw"):
        from reverie import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'reverie' has no attribute {name!r}")
