"""RehearsalBuffer: construction, add/sample shapes and dtypes, weights, out=, sizes."""

from __future__ import annotations

import pytest
import torch

from reverie import RehearsalBuffer, Samples

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.int64, torch.float64, torch.int8]


def field_value(dtype: torch.dtype, ids: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[n, *shape] tensor whose every element encodes the sample id (exact in every dtype)."""
    v = (ids % 100).reshape(-1, *([1] * len(shape))).expand(-1, *shape)
    return v.to(dtype).contiguous()


def make_batch(fields: dict, ids: torch.Tensor, num_classes: int) -> tuple[dict, torch.Tensor]:
    data = {name: field_value(dtype, ids, shape) for name, (shape, dtype) in fields.items()}
    return data, ids % num_classes


def test_construction_and_properties(small_fields):
    buf = RehearsalBuffer(10, small_fields, num_classes=5, candidates=3, seed=7)
    assert buf.capacity == 10
    assert len(buf) == 0
    assert buf.num_classes == 5
    assert buf.candidates == 3
    assert buf.seed == 7
    assert buf.fields == {"x": ((3, 4), torch.float32), "y": ((2,), torch.int64)}
    assert buf.class_counts() == {}
    assert "capacity=10" in repr(buf)
    # int shapes are accepted for 1-D fields, and adaptive quotas are the default
    buf2 = RehearsalBuffer(4, {"v": (5, torch.float32)})
    assert buf2.fields == {"v": ((5,), torch.float32)}
    assert buf2.num_classes is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_and_sample_shapes_and_dtypes(dtype):
    fields = {"img": ((3, 5, 5), dtype), "aux": ((4,), torch.float32), "tag": ((), dtype)}
    buf = RehearsalBuffer(32, fields, num_classes=4, seed=1)
    ids = torch.arange(20)
    data, labels = make_batch(fields, ids, 4)
    assert buf.add(data, labels) == 20
    assert len(buf) == 20

    s = buf.sample(8)
    assert isinstance(s, Samples)
    assert len(s) == 8
    assert s.num_fields == 3
    assert set(s.keys()) == {"img", "aux", "tag"}
    assert s["img"].shape == (8, 3, 5, 5) and s["img"].dtype == dtype
    assert s["aux"].shape == (8, 4) and s["aux"].dtype == torch.float32
    assert s["tag"].shape == (8,) and s["tag"].dtype == dtype
    assert s.labels.shape == (8,) and s.labels.dtype == torch.int64
    assert s.weights.shape == (8,) and s.weights.dtype == torch.float32
    assert s.ranks is None
    # Fields and labels of each drawn sample belong together.
    sid = s["aux"][:, 0].to(torch.int64)
    assert len(set(sid.tolist())) == 8, "without replacement"
    for name, (shape, dt) in fields.items():
        assert torch.equal(s[name], field_value(dt, sid, shape)), name
    assert torch.equal(s.labels, sid % 4)


def test_bare_tensor_for_a_single_field():
    buf = RehearsalBuffer(8, {"x": ((2,), torch.float32)}, seed=0)
    assert buf.add(torch.ones(3, 2), torch.zeros(3, dtype=torch.int64)) == 3
    s = buf.sample(3)
    assert torch.equal(s["x"], torch.ones(3, 2))


def test_weights_default_and_per_sample():
    buf = RehearsalBuffer(16, {"x": ((1,), torch.float32)}, seed=3)
    buf.add(torch.arange(4.0).reshape(4, 1), torch.zeros(4, dtype=torch.int64))
    w = torch.tensor([0.5, 2.0, 3.5, 0.0])
    buf.add(torch.arange(4.0, 8.0).reshape(4, 1), torch.zeros(4, dtype=torch.int64), w)
    s = buf.sample(8)
    for x, weight in zip(s["x"][:, 0].tolist(), s.weights.tolist(), strict=True):
        expected = 1.0 if x < 4 else float(w[int(x) - 4])
        assert weight == expected, x


def test_sample_into_out_does_not_allocate():
    fields = {"x": ((3, 8, 8), torch.float32), "m": ((2,), torch.uint8)}
    buf = RehearsalBuffer(64, fields, num_classes=2, seed=5)
    ids = torch.arange(50)
    data, labels = make_batch(fields, ids, 2)
    buf.add(data, labels)

    out = buf.allocate(16)
    ptrs = {n: t.data_ptr() for n, t in out.items()}
    lptr, wptr = out.labels.data_ptr(), out.weights.data_ptr()
    for _ in range(3):
        s = buf.sample(16, out=out)
        assert len(s) == 16
        for n in fields:
            assert s[n].data_ptr() == ptrs[n]
            assert out[n].data_ptr() == ptrs[n]
        assert s.labels.data_ptr() == lptr and s.weights.data_ptr() == wptr
        sid = s["x"][:, 0, 0, 0].to(torch.int64)
        assert torch.equal(s["m"], field_value(torch.uint8, sid, (2,)))
        assert torch.equal(s.labels, sid % 2)

    # A caller-made Samples with more rows than r works too; only the first k are written.
    own = Samples(
        {"x": torch.full((20, 3, 8, 8), -1.0), "m": torch.zeros(20, 2, dtype=torch.uint8)},
        torch.full((20,), -1, dtype=torch.int64),
        torch.zeros(20),
    )
    s = buf.sample(5, out=own)
    assert len(s) == 5
    assert s["x"].data_ptr() == own["x"].data_ptr()
    assert (own.labels[:5] >= 0).all() and (own.labels[5:] == -1).all()


def test_fewer_than_r_when_fewer_stored():
    buf = RehearsalBuffer(10, {"x": ((2,), torch.float32)}, seed=1)
    assert len(buf.sample(4)) == 0
    buf.add(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64))
    s = buf.sample(7)
    assert len(s) == 3
    assert s["x"].shape == (3, 2)
    assert len(buf.sample(0)) == 0
    out = buf.allocate(7)
    s = buf.sample(7, out=out)
    assert len(s) == 3 and s["x"].data_ptr() == out["x"].data_ptr()


def test_len_and_class_counts_fixed_quotas():
    buf = RehearsalBuffer(6, {"x": ((1,), torch.float32)}, num_classes=3, seed=2)
    labels = torch.tensor([0, 0, 0, 0, 2], dtype=torch.int64)
    stored = buf.add(torch.zeros(5, 1), labels)  # counts reservoir replacements too
    assert 3 <= stored <= 5
    assert len(buf) == 3
    assert buf.class_counts() == {0: 2, 2: 1}


def test_len_and_class_counts_adaptive():
    buf = RehearsalBuffer(8, {"x": ((1,), torch.float32)}, seed=2)
    buf.add(torch.zeros(20, 1), torch.full((20,), 11, dtype=torch.int64))
    assert buf.class_counts() == {11: 8}
    buf.add(torch.zeros(20, 1), torch.full((20,), 3, dtype=torch.int64))
    assert buf.class_counts() == {11: 4, 3: 4}
    assert len(buf) == 8


def test_candidates_limit_each_add():
    buf = RehearsalBuffer(1000, {"x": ((1,), torch.float32)}, candidates=4, seed=2)
    assert buf.add(torch.zeros(10, 1), torch.zeros(10, dtype=torch.int64)) == 4
    assert buf.add(torch.zeros(2, 1), torch.zeros(2, dtype=torch.int64)) == 2
    assert len(buf) == 6


def test_empty_add():
    buf = RehearsalBuffer(4, {"x": ((2,), torch.float32)})
    assert buf.add(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)) == 0
    assert len(buf) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"x": ((3, 32, 32), torch.float32)},
        {"a": ((7,), torch.uint8), "b": ((5, 3), torch.bfloat16), "c": ((), torch.int64)},
    ],
)
def test_nbytes_is_capacity_times_sample_bytes_plus_small_metadata(fields):
    capacity = 1000
    buf = RehearsalBuffer(capacity, fields)
    sample_bytes = sum(
        torch.empty((), dtype=dt).element_size() * int(torch.tensor(shape).prod().item())
        for shape, dt in fields.values()
    )
    sample_bytes += 8 + 4  # label + weight
    assert buf.nbytes >= capacity * sample_bytes
    # metadata: a few ints per slot plus alignment padding per column
    assert buf.nbytes - capacity * sample_bytes <= capacity * 32 + 64 * (len(fields) + 2)


def test_samples_helpers():
    buf = RehearsalBuffer(8, {"x": ((2,), torch.float32)}, seed=1)
    buf.add(torch.arange(8.0).reshape(4, 2), torch.arange(4))
    s = buf.sample(4)
    c = s.clone()
    assert c["x"].data_ptr() != s["x"].data_ptr()
    assert torch.equal(c["x"], s["x"]) and torch.equal(c.labels, s.labels)
    n = s.narrow(2)
    assert len(n) == 2 and n["x"].data_ptr() == s["x"].data_ptr()
    moved = s.to("cpu")
    assert torch.equal(moved.weights, s.weights)
    assert "k=4" in repr(s)
