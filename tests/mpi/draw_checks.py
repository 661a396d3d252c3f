"""Checks shared by the multi-rank uniformity tests."""

from __future__ import annotations

from typing import Any

from scipy.stats import chisquare


def check_owner_shares(
    rank: int, res: dict[str, Any], sizes: list[int], pooled: list[list[int]], p_min: float
) -> None:
    """Rank ``rank``'s draws take rows from each owner in proportion to what it holds
    (chi-square, p > p_min); adds its per-slot counts (``res["per_slot"][owner][slot]``) to
    ``pooled``."""
    total = sum(sizes)
    per_owner = [sum(slots) for slots in res["per_slot"]]
    n = sum(per_owner)
    p = chisquare(per_owner, [n * s / total for s in sizes]).pvalue
    assert p > p_min, f"rank {rank}: drawn per owner {per_owner} vs sizes {sizes} (p={p:.2g})"
    for owner, slots in enumerate(res["per_slot"]):
        for i, c in enumerate(slots):
            pooled[owner][i] += c
