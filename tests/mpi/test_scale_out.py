"""The owner-only draw protocol on 8 real ranks (mpiexec -n 8, both engines): messages per
draw once sizes settle, draws uniform over the union of the buffers while they fill and
when they no longer change (chi-square), and an owner's reply memory bounded by the replies
open at once, not by the number of ranks that ask it."""

from __future__ import annotations

from typing import Any

import pytest
from mpi_jobs import cached_job
from scipy.stats import chisquare

P_MIN = 0.001
RANKS = 8


@pytest.fixture(params=["mpi", "thallium"])
def scale_job(request: pytest.FixtureRequest) -> dict[str, Any]:
    return cached_job("tests/mpi/scale_worker.py", RANKS, request.param, timeout=300)


def owner_chisquare(drawn: list[float], expected: list[float]) -> float:
    """p-value of drawn vs expected per owner, over the owners expected to hold anything."""
    keep = [i for i, e in enumerate(expected) if e > 0]
    assert all(drawn[i] == 0 for i in range(len(drawn)) if i not in keep), (drawn, expected)
    obs, exp = [drawn[i] for i in keep], [expected[i] for i in keep]
    scale = sum(obs) / sum(exp)  # the chi-square needs equal totals; they differ by float rounding
    return chisquare(obs, [e * scale for e in exp]).pvalue


def test_settled_draws_message_only_the_owners_they_sample(scale_job):
    results = scale_job["settled"]
    sizes = results[0]["sizes"]
    assert sizes.count(0) == 1 and sizes.count(max(sizes)) >= 2 and len(set(sizes)) >= 4
    for rank, res in enumerate(results):
        draws = res["draws"]
        assert draws == 150 and res["short"] == 0 and res["failed_requests"] == 0, res
        sent, queries = res["requests_sent"] / draws, res["size_messages"] / draws
        assert sent <= 2.3, f"rank {rank}: {sent:.2f} requests per draw of r = 2"
        assert sent + queries <= 3.0, (
            f"rank {rank}: {sent:.2f} requests + {queries:.2f} size messages per draw"
        )


def test_settled_draws_are_uniform_over_the_union(scale_job):
    results = scale_job["settled"]
    sizes = results[0]["sizes"]
    total = sum(sizes)
    pooled = [[0] * s for s in sizes]
    for rank, res in enumerate(results):
        per_owner = [sum(slots) for slots in res["per_slot"]]
        n = sum(per_owner)
        p = owner_chisquare(per_owner, [n * s / total for s in sizes])
        assert p > P_MIN, f"rank {rank}: drawn per owner {per_owner} vs sizes {sizes} (p={p:.2g})"
        for owner, slots in enumerate(res["per_slot"]):
            for i, c in enumerate(slots):
                pooled[owner][i] += c
    union = [c for slots in pooled for c in slots]
    p = chisquare(union).pvalue
    assert p > P_MIN, f"slot counts over the union of the 8 buffers not uniform (p={p:.2g})"


def test_draws_while_buffers_fill_follow_the_true_sizes(scale_job):
    results = scale_job["filling"]
    final = results[0]["final_sizes"]
    assert any(s == c for s, c in zip(final, [48, 96, 64, 400, 80, 40, 112, 72], strict=True)), (
        "some buffer should fill"
    )
    assert final[3] < 400 and final[6] < 112, "and some should still be filling"
    drawn = [0] * RANKS
    expected = [0.0] * RANKS
    for rank, res in enumerate(results):
        assert res["failed_requests"] == 0, res
        p = owner_chisquare(res["drawn"], res["expected"])
        assert p > P_MIN, (
            f"rank {rank}: drawn per owner {res['drawn']} vs expected {res['expected']} (p={p:.2g})"
        )
        drawn = [a + b for a, b in zip(drawn, res["drawn"], strict=True)]
        expected = [a + b for a, b in zip(expected, res["expected"], strict=True)]
    p = owner_chisquare(drawn, expected)
    assert p > P_MIN, (
        f"pooled: drawn per owner {drawn} vs expected {[round(e) for e in expected]} (p={p:.2g})"
    )


def test_reply_staging_grows_with_replies_open_at_once_not_with_ranks(scale_job, request):
    # Ranks draw in turn: each owner answers all 7 others, never two at once. The MPI
    # engine stages whole replies of these small rows (one eager message); it used to keep
    # a staging buffer per requester (7 here; 4 GB per rank at 1024 ranks of 64 KB rows).
    results = scale_job["in_turn"]
    for rank, res in enumerate(results):
        assert res["draws"] == 6 and res["failed_requests"] == 0, (rank, res)
    one = max(res["first_turn_staging"] for res in results)
    if request.node.callspec.params["scale_job"] == "thallium":  # rows go from their slots
        assert one == 0 and all(res["staging"] == 0 for res in results), results
        return
    assert one > 0, "the first turn's draws should have staged a reply on the owners they asked"
    for rank, res in enumerate(results):
        assert res["staging"] <= 2 * one, (
            f"rank {rank} holds {res['staging']} B of reply staging after answering 7 ranks in turn; "
            f"one reply's is {one} B"
        )
