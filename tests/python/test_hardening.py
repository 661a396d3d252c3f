"""Arguments that used to hang, crash with an unnamed error, or grow memory without bound."""

from __future__ import annotations

import math

import pytest
import torch

from reverie import DistributedRehearsalBuffer, RehearsalBuffer, _core
from reverie.schema import host_memory_bytes

FIELDS = {"x": ((2,), torch.float32)}


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e300, 0.0, -1.0, True, "30"])
def test_timeout_must_be_finite_and_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="timeout: expected finite seconds"):
        DistributedRehearsalBuffer(10, FIELDS, timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0])
def test_wait_and_flush_reject_unbounded_timeouts(bad: float) -> None:
    with DistributedRehearsalBuffer(10, FIELDS) as d:
        d.add(torch.ones(3, 2), torch.zeros(3, dtype=torch.int64))
        d.flush()
        handle = d.get_remote_samples(2)
        with pytest.raises(ValueError, match="timeout"):
            handle.wait(timeout=bad)
        with pytest.raises(ValueError, match="timeout"):
            d.flush(timeout=bad)
        assert len(handle.wait(timeout=5)) == 2


def test_core_rejects_infinite_timeout_too() -> None:
    buf = _core.LocalBuffer([8], 10, None, 0, 0)
    engine = _core.Engine(buf, None, 4, 0, 2, 16, 1.0, 0)
    with pytest.raises(ValueError, match="timeout: expected finite seconds"):
        engine.flush(math.inf)
    with pytest.raises(ValueError, match="timeout: expected finite seconds"):
        _core.Engine(buf, None, 4, 0, 2, 16, math.inf, 0)
    engine.close()


def test_huge_field_shape_names_the_field_and_bytes() -> None:
    with pytest.raises(
        ValueError, match=r"fields\['x'\]: shape \(4611686018427387904,\) is 18446744073709551616 bytes"
    ):
        RehearsalBuffer(10, {"x": ((2**62,), torch.float32)})


def test_capacity_beyond_memory_names_capacity_and_bytes() -> None:
    capacity = host_memory_bytes() // 4000 + 1
    with pytest.raises(
        ValueError, match=rf"capacity: {capacity} samples x 4012 bytes = \d+ bytes, more than"
    ):
        RehearsalBuffer(capacity, {"x": ((1000,), torch.float32)})


def test_negative_weights_are_rejected_and_change_nothing() -> None:
    buf = RehearsalBuffer(10, FIELDS)
    with pytest.raises(ValueError, match="weights: expected finite values >= 0"):
        buf.add(torch.ones(2, 2), torch.zeros(2, dtype=torch.int64), torch.tensor([1.0, -0.5]))
    assert len(buf) == 0


def test_nan_sample_values_are_stored_bit_for_bit() -> None:
    buf = RehearsalBuffer(4, FIELDS)
    x = torch.tensor([[math.nan, math.inf]])
    buf.add(x, torch.zeros(1, dtype=torch.int64))
    out = buf.sample(1)["x"]
    assert torch.equal(out.view(torch.int32), x.view(torch.int32))


def test_adaptive_bookkeeping_is_bounded_by_capacity() -> None:
    buf = RehearsalBuffer(100, {"x": ((1,), torch.uint8)}, seed=4)
    n = 1_000_000
    for first in range(0, n, 100_000):  # a million distinct labels, each offered once
        labels = torch.arange(first, first + 100_000, dtype=torch.int64)
        buf.add(torch.zeros(100_000, 1, dtype=torch.uint8), labels)
    state = buf.state_dict()
    assert len(state["policy"]["classes"]) == 100
    assert state["policy"]["saturated"] is True
    assert len(buf) == 100 and sum(buf.class_counts().values()) == 100
    restored = RehearsalBuffer(100, {"x": ((1,), torch.uint8)})
    restored.load_state_dict(state)
    restored.add(torch.zeros(1, 1, dtype=torch.uint8), torch.tensor([n + 5]))  # still saturated: dropped
    assert restored.class_counts() == buf.class_counts()


def test_core_refuses_all_zero_engine_generators() -> None:
    with DistributedRehearsalBuffer(10, FIELDS) as d:
        good = [1, 2, 3, 4]
        for key in ("select_rng", "draw_rng"):
            state = {"select_rng": good, "draw_rng": good, "sizes": [0], key: [0, 0, 0, 0]}
            with pytest.raises(ValueError, match=f"{key} is all zero"):
                d._engine.restore(state)
