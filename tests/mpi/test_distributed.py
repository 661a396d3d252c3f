"""DistributedRehearsalBuffer on real multi-rank jobs (mpiexec -n 2 and -n 4), for every
built engine. The scenarios run in tests/mpi/worker.py; these tests check their numbers."""

from __future__ import annotations

import pytest
import torch
from draw_checks import check_owner_shares
from scipy.stats import chisquare

from reverie.distributed import DistributedRehearsalBuffer

P_MIN = 0.001


def test_idle_server_does_not_burn_a_core(job):
    # Whole-process CPU time (server and worker threads included) over 2 s of idling.
    for rank, res in enumerate(job["idle"]):
        assert res["wall_s"] >= 1.9
        assert res["cpu_s"] < 0.5, (
            f"rank {rank} used {res['cpu_s']:.3f} CPU s while idle for {res['wall_s']:.1f} s"
        )
        assert res["rusage_s"] < 0.5


@pytest.mark.parametrize("layout", ["single", "tiny", "multi"])
def test_every_drawn_sample_is_what_its_owner_stored(job, layout):
    # Rank, label, weight and every field byte are functions of the sample id the owner
    # encoded into it; "multi" mixes uint8, int64 and a 68 KB float32 field.
    for rank, res in enumerate(job["correct"]):
        got = res[layout]
        assert got["checked"] > 500
        assert got["bad"] == 0, f"rank {rank}: {got['bad']} samples differ from what their owner stored"
        assert got["dupes"] == 0, f"rank {rank}: a draw returned a sample twice"
        assert got["short"] == 0, f"rank {rank}: a draw returned fewer than min(r, global size) samples"
        assert got["remote"] > 0
        assert got["failed_requests"] == 0
        assert got["global_size"] == got["size"] * len(job["correct"])
        # 13 draws, odd ones released: a kept draw's rows survive the next draw, which lands
        # in the other block; a released draw's block takes the next draw.
        assert got["held_intact"] == got["held_moved"] == 6, got
        assert got["released_reused"] == 6, got
        if got["gathers_rows"] and len(job["correct"]) == 2:  # a peer's share past one message
            assert got["past_one_message"] > 0


def test_engine_stats_split_where_the_draws_time_went(job, engine):
    # local copy, then waiting for the owners' answers and for their rows: parts of fetch_s.
    for rank, res in enumerate(job["correct"]):
        for layout in ("single", "tiny", "multi"):
            got = res[layout]
            parts = got["local_s"] + got["answer_wait_s"] + got["rows_wait_s"]
            assert 0 < parts <= got["fetch_s"], (rank, layout, got)
            assert got["local_s"] > 0
            if engine == "mpi":  # replies come in two steps: the answer, then the rows
                assert got["answer_wait_s"] > 0, (rank, layout, got)
                assert got["rows_wait_s"] > 0, (rank, layout, got)
            else:
                assert got["answer_wait_s"] == got["rows_wait_s"] == 0


def test_draws_are_uniform_over_the_union_of_buffers(job):
    results = job["unbiased"]
    sizes = results[0]["sizes"]
    total = sum(sizes)
    assert max(sizes) >= 10 * min(sizes)  # unequal fills
    pooled = [[0] * s for s in sizes]
    for rank, res in enumerate(results):
        # Counts are at most one draw stale: after a flush and a warm-up draw they are exact.
        assert res["known_global"] == total, f"rank {rank} planned with {res['known_global']}, not {total}"
        assert res["short"] == 0
        # Share from each owner, seen by this requester: proportional to what it holds.
        check_owner_shares(rank, res, sizes, pooled, P_MIN)
    for owner, slots in enumerate(pooled):  # slots uniform within each owner
        p = chisquare(slots).pvalue
        assert p > P_MIN, f"owner {owner}: slot counts not uniform (p={p:.2g})"
        assert min(slots) > 0
    p = chisquare([c for slots in pooled for c in slots]).pvalue  # and over the union
    assert p > P_MIN, f"slot counts over the union not uniform (p={p:.2g})"


def test_concurrent_adds_and_draws_then_close_with_draws_in_flight(job):
    for rank, res in enumerate(job["concurrent"]):
        assert res["steps"] >= 20, f"rank {rank}: only {res['steps']} steps in {res['loop_s']:.1f} s"
        assert res["bad"] == 0 and res["dupes"] == 0
        assert res["checked"] > 0 and res["rows_remote"] > 0
        assert res["close_s"] < 10.0, f"rank {rank}: close took {res['close_s']:.1f} s"
        assert res["warnings"] == [], f"rank {rank}: {res['warnings']}"


def test_bad_requests_get_error_replies_and_the_server_survives(job):
    for rank, res in enumerate(job["bad_requests"]):
        if "skipped" in res:
            pytest.skip(res["skipped"])
        cases = {k: v for k, v in res.items() if isinstance(v, dict) and "want" in v}
        assert len(cases) >= 12
        for name, case in cases.items():
            assert case["got"] == case["want"], f"rank {rank} -> peer, {name}: {case}"
            if case["engine"] == "mpi":  # no readable id <=> answered on the anonymous tag
                assert case["anonymous"] == (not case["readable"]), f"{name}: {case}"
        assert cases["size_query"]["owner_size"] == res["owner_size"]
        assert cases["two_slots"]["count"] == 2
        if cases["two_slots"]["payload_bytes"] is not None:
            assert cases["two_slots"]["payload_bytes"] == 2 * res["row_bytes"]
        if res.get("gathers_rows"):  # MPI engine, MPICH with CMA: both rows in one message
            assert cases["two_slots"]["payload_messages"] == 1
        for name in ("wrong_token", "slot_eq_size", "too_many", "truncated", "oversized"):
            assert cases[name]["count"] == 0 and cases[name]["payload_bytes"] in (0, None)
            assert cases[name]["request_id"] > 1_000_000  # answered to the right request
        after = res["after"]  # normal draws afterwards: complete and correct
        assert after["checked"] == 160 and after["bad"] == 0 and after["dupes"] == 0
        # The previous rank sent this one a request with another job's token: the rejection
        # is counted and, where the engine knows the sender (MPI), it is no longer drawn from.
        ranks = len(job["bad_requests"])
        sender = [(rank - 1) % ranks] if cases["wrong_token"]["engine"] == "mpi" else []
        assert after["excluded"] == sender and after["bad_token_requests"] == 1
        assert after["failed_requests"] == 0
        assert after["remote"] > 0 or ranks == 2


def test_add_without_wake_is_applied_by_flush_and_rejects_a_non_bool():
    fields = {"x": ((2,), torch.float32)}
    with DistributedRehearsalBuffer(100, fields, candidates=None, seed=1, comm=None) as dbuf:
        x, y = torch.ones(10, 2), torch.arange(10) % 3
        with pytest.raises(TypeError, match="wake"):
            dbuf.add(x, y, wake=1)
        for _ in range(3):
            dbuf.add(x, y, wake=False)
        dbuf.flush()
        assert len(dbuf) == 30
        assert dbuf.engine_stats()["inserts"] == 3


@pytest.mark.parametrize("engine", ["auto", "mpi"])
def test_single_process_uses_the_local_engine(engine):
    fields = {"x": ((3, 4, 4), torch.float32), "tag": ((2,), torch.int64)}
    with DistributedRehearsalBuffer(50, fields, candidates=None, seed=3, comm=None, engine=engine) as dbuf:
        assert dbuf.engine == "local" and dbuf.world_size == 1
        g = torch.arange(30)
        x = g.float()[:, None, None, None].expand(30, 3, 4, 4).contiguous()
        dbuf.add({"x": x, "tag": torch.stack([g, g * 2], 1)}, g % 5, (g.float() + 1) / 8)
        dbuf.flush()
        assert len(dbuf) == 30 and dbuf.global_size() == 30
        h = dbuf.get_remote_samples(12)
        batch = h.wait(timeout=10.0)
        assert h.done() and len(batch) == 12
        ids = batch["tag"][:, 0]
        assert len(set(ids.tolist())) == 12
        assert torch.equal(batch["tag"][:, 1], ids * 2)
        assert torch.equal(batch["x"], ids.float()[:, None, None, None].expand(12, 3, 4, 4))
        assert torch.equal(batch.labels, ids % 5)
        assert torch.equal(batch.weights, (ids.float() + 1) / 8)
        assert torch.equal(batch.ranks, torch.zeros(12, dtype=torch.int32))
        assert len(dbuf.get_remote_samples(50).wait()) == 30  # min(r, size)
        assert len(dbuf.get_remote_samples(0).wait()) == 0
    dbuf.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        dbuf.get_remote_samples(1)


def test_release_lets_the_next_draw_reuse_the_block_and_refuses_misuse():
    fields = {"x": ((4,), torch.float32)}
    with DistributedRehearsalBuffer(100, fields, candidates=None, seed=2, comm=None, timeout=10.0) as dbuf:
        g = torch.arange(40)
        dbuf.add(g.float()[:, None].expand(40, 4).contiguous(), g % 4)
        dbuf.flush()
        first = dbuf.get_remote_samples(8)
        with pytest.raises(RuntimeError, match="release: wait"):
            first.release()  # not waited for: nothing changes
        kept = first.wait()
        copy = kept["x"].clone()
        second = dbuf.get_remote_samples(8)  # first not released: the other block
        second_x = second.wait()["x"]
        assert second_x.data_ptr() != kept["x"].data_ptr() and torch.equal(kept["x"], copy)
        second.release()
        second.release()  # once is enough; twice is harmless
        with pytest.raises(RuntimeError, match="wait: the draw was released"):
            second.wait()
        third = dbuf.get_remote_samples(8).wait()
        assert third["x"].data_ptr() == second_x.data_ptr()
        assert torch.equal(third["x"][:, 0], third["x"][:, 3]) and len(set(third["x"][:, 0].tolist())) == 8
