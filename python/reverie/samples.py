"""The container every draw returns: field tensors plus labels, weights and owner ranks."""

from __future__ import annotations

import torch


class Samples(dict):
    """A dict of field tensors ``[k, *shape]`` with ``labels`` (int64 ``[k]``),
    ``weights`` (float32 ``[k]``) and, for distributed draws, ``ranks`` (int32 ``[k]``,
    the rank that owned each sample). ``len(samples)`` is k, the number of samples."""

    labels: torch.Tensor
    weights: torch.Tensor
    ranks: torch.Tensor | None

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        labels: torch.Tensor,
        weights: torch.Tensor,
        ranks: torch.Tensor | None = None,
    ) -> None:
        super().__init__(fields)
        self.labels = labels
        self.weights = weights
        self.ranks = ranks

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_fields(self) -> int:
        return super().__len__()

    def narrow(self, k: int) -> Samples:
        """Views of the first k samples."""
        ranks = None if self.ranks is None else self.ranks[:k]
        return Samples({n: t[:k] for n, t in self.items()}, self.labels[:k], self.weights[:k], ranks)

    def clone(self) -> Samples:
        """A copy that owns its memory (draw results are views into reused memory)."""
        ranks = None if self.ranks is None else self.ranks.clone()
        return Samples(
            {n: t.clone() for n, t in self.items()}, self.labels.clone(), self.weights.clone(), ranks
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Samples:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        ranks = None if self.ranks is None else move(self.ranks)
        return Samples({n: move(t) for n, t in self.items()}, move(self.labels), move(self.weights), ranks)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {tuple(t.shape)} {t.dtype}" for n, t in self.items())
        return f"Samples(k={len(self)}, {shapes})"
