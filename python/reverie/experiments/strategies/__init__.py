"""Continual-learning strategies, by name."""

from __future__ import annotations

from .base import Strategy, TrainingContext
from .der import DarkExperienceReplay, DarkExperienceReplayPlusPlus
from .incremental import Incremental
from .rehearsal import Rehearsal
from .scratch import Scratch

REGISTRY: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Incremental, Scratch, Rehearsal, DarkExperienceReplay, DarkExperienceReplayPlusPlus)
}


def make_strategy(name: str, ctx: TrainingContext) -> Strategy:
    """Instantiate strategy ``name`` (a key of :data:`REGISTRY`)."""
    if name not in REGISTRY:
        raise ValueError(f"strategy: unknown {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name](ctx)


__all__ = ["REGISTRY", "Strategy", "TrainingContext", "make_strategy"]
