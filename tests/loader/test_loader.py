"""RehearsalLoader on 1, 2 and 4 ranks, launched for real with mpiexec."""

from __future__ import annotations

from pathlib import Path

import mpi_launch
import pytest
import torch

from reverie import DistributedRehearsalBuffer, RehearsalLoader, concat_draw

WORKER = Path(__file__).with_name("loader_worker.py")


def run_ranks(n: int, *args: str) -> list[dict]:
    return mpi_launch.run_ranks(WORKER, n, *args)


@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("check", ["single", "multi"])
def test_batch_is_minibatch_then_draw(ranks: int, check: str) -> None:
    for r in run_ranks(ranks, check):
        assert r["steps"] == 40
        assert r["drawn"] >= 30 * 5
        if ranks > 1:
            assert len(r["drawn_from"]) > 1, f"draws should come from several ranks: {r}"


def test_next_draw_arrives_during_slow_step() -> None:
    for r in run_ranks(2, "overlap"):
        assert r["resumes"] == 11 and r["during_step"] == 12
        assert r["arrived"] == r["resumes"], r


def test_break_and_exception_release_everything() -> None:
    assert all(r["exited"] for r in run_ranks(2, "early_exit"))


def test_single_process_without_comm() -> None:
    stream = [(torch.full((4, 3), float(i)), torch.full((4,), i % 2)) for i in range(10)]
    with DistributedRehearsalBuffer(16, {"x": ((3,), torch.float32)}, candidates=2) as dbuf:
        sizes = [x.shape[0] for x, _, _ in RehearsalLoader(stream, dbuf, representatives=3)]
    assert sizes[0] == 4 and sizes[-1] == 7


def test_concat_draw_into_preallocated() -> None:
    with DistributedRehearsalBuffer(16, {"x": ((3,), torch.float32)}) as dbuf:
        dbuf.add(torch.ones(6, 3), torch.zeros(6, dtype=torch.int64))
        dbuf.flush()
        draw = dbuf.get_remote_samples(4).wait()
        out = dbuf.schema.allocate(10)
        before = out["x"].data_ptr()
        mixed = concat_draw(torch.zeros(5, 3), torch.ones(5, dtype=torch.int64), None, draw, out=out)
    assert len(mixed) == 9 and mixed["x"].data_ptr() == before
    assert torch.equal(mixed["x"][:5], torch.zeros(5, 3)) and torch.equal(mixed["x"][5:], torch.ones(4, 3))
    assert torch.equal(mixed.weights, torch.ones(9))


def test_bad_representatives() -> None:
    with DistributedRehearsalBuffer(16, {"x": ((3,), torch.float32)}, max_representatives=8) as dbuf:
        with pytest.raises(ValueError, match="representatives"):
            RehearsalLoader([], dbuf, representatives=9)


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the loader's CUDA path runs only on a GPU machine"
)


@needs_cuda
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("check", ["single", "multi"])
def test_cuda_batch_is_minibatch_then_draw(ranks: int, check: str) -> None:
    for r in run_ranks(ranks, check, "--device", "cuda"):
        assert r["steps"] == 40 and r["drawn"] >= 30 * 5


@needs_cuda
def test_cuda_minibatches_already_on_the_gpu() -> None:
    for r in run_ranks(2, "multi", "--device", "cuda", "--input-device", "cuda"):
        assert r["steps"] == 40


@needs_cuda
@pytest.mark.parametrize("ranks", [1, 2])
def test_cuda_copies_are_ordered_with_a_slow_copy_stream(ranks: int) -> None:
    assert all(r["steps"] == 30 for r in run_ranks(ranks, "slow_side_stream"))


@needs_cuda
def test_pin_memory_registers_and_close_unregisters() -> None:
    dbuf = DistributedRehearsalBuffer(16, {"x": ((3,), torch.float32)})
    dbuf.pin_memory()
    dbuf.pin_memory()  # once only
    blocks = dbuf.receive_blocks()
    assert dbuf.is_pinned and all(t.is_pinned() for b in blocks for t in [b["x"], b.labels, b.weights])
    dbuf.close()
    assert not any(t.is_pinned() for b in blocks for t in [b["x"], b.labels, b.weights])


def test_pin_memory_without_cuda_names_the_problem() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the error path needs a machine without it")
    with DistributedRehearsalBuffer(16, {"x": ((3,), torch.float32)}) as dbuf:
        with pytest.raises(RuntimeError, match="pin_memory: CUDA is not available"):
            dbuf.pin_memory()
        with pytest.raises(RuntimeError, match="CUDA"):
            RehearsalLoader([], dbuf, representatives=3, device="cuda")
