"""Every bad input raises ValueError/TypeError naming the argument and changes nothing."""

from __future__ import annotations

import math

import pytest
import torch
from buffer_snapshot import assert_same_snapshot, snapshot

from reverie import RehearsalBuffer, Samples

FIELDS = {"x": ((3, 4), torch.float32), "y": ((2,), torch.int64)}
NUM_CLASSES = 3


def batch(n: int = 6, first: int = 0) -> tuple[dict, torch.Tensor]:
    ids = torch.arange(first, first + n)
    x = ids.to(torch.float32).reshape(n, 1, 1).expand(n, 3, 4).contiguous()
    y = ids.reshape(n, 1).expand(n, 2).contiguous()
    return {"x": x, "y": y}, ids % NUM_CLASSES


@pytest.fixture(params=[NUM_CLASSES, None], ids=["fixed", "adaptive"])
def buffer(request) -> RehearsalBuffer:
    buf = RehearsalBuffer(8, FIELDS, num_classes=request.param, candidates=4, seed=11)
    for step in range(3):
        buf.add(*batch(6, 6 * step))
    return buf


# ----------------------------------------------------------------------------- constructor


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"capacity": 0}, ValueError, "capacity"),
        ({"capacity": -3}, ValueError, "capacity"),
        ({"capacity": 2.5}, ValueError, "capacity"),
        ({"capacity": "8"}, ValueError, "capacity"),
        ({"capacity": True}, ValueError, "capacity"),
        ({"capacity": 2**32}, ValueError, "capacity"),
        ({"capacity": 2, "num_classes": 3}, ValueError, "capacity"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": -1}, ValueError, "num_classes"),
        ({"num_classes": 2.0}, ValueError, "num_classes"),
        ({"num_classes": True}, ValueError, "num_classes"),
        ({"candidates": 0}, ValueError, "candidates"),
        ({"candidates": -2}, ValueError, "candidates"),
        ({"candidates": 1.5}, ValueError, "candidates"),
        ({"candidates": True}, ValueError, "candidates"),
        ({"candidates": 2**32}, ValueError, "candidates"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, ValueError, "seed"),
        ({"seed": "1"}, ValueError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"seed": None}, ValueError, "seed"),
        ({"fields": {}}, ValueError, "fields"),
        ({"fields": [("x", ((2,), torch.float32))]}, ValueError, "fields"),
        ({"fields": {"x": ((0, 2), torch.float32)}}, ValueError, "fields"),
        ({"fields": {"x": ((-1,), torch.float32)}}, ValueError, "fields"),
        ({"fields": {"x": ((2.0,), torch.float32)}}, ValueError, "fields"),
        ({"fields": {"x": ((2,), "float32")}}, TypeError, "fields"),
        ({"fields": {"x": ((2,), torch.complex64)}}, TypeError, "fields"),
        ({"fields": {"x": (2,)}}, ValueError, "fields"),
        ({"fields": {"": ((2,), torch.float32)}}, ValueError, "fields"),
        ({"fields": {f"f{i}": ((1,), torch.float32) for i in range(17)}}, ValueError, "fields"),
    ],
)
def test_constructor_rejects(kwargs, exc, name):
    args = {"capacity": 8, "fields": FIELDS, "num_classes": None, "candidates": None, "seed": 0, **kwargs}
    with pytest.raises(exc, match=name):
        RehearsalBuffer(**args)


def test_constructor_accepts_edges():
    RehearsalBuffer(3, FIELDS, num_classes=3, candidates=2**32 - 1, seed=2**64 - 1)
    RehearsalBuffer(1, {f"f{i}": ((1,), torch.uint8) for i in range(16)})


# ----------------------------------------------------------------------------- add


def _bad_adds():
    """(description, fields, labels, weights, exception, name that must appear)."""
    f, lab = batch(6)
    meta = torch.empty(6, 3, 4, device="meta")
    cases = [
        ("missing field", {"x": f["x"]}, lab, None, ValueError, "fields"),
        ("extra field", {**f, "z": f["x"]}, lab, None, ValueError, "fields"),
        ("renamed field", {"x": f["x"], "w": f["y"]}, lab, None, ValueError, "fields"),
        ("list instead of dict", [f["x"], f["y"]], lab, None, TypeError, "fields"),
        ("bare tensor with two fields", f["x"], lab, None, TypeError, "fields"),
        ("sample shape", {**f, "x": torch.zeros(6, 4, 3)}, lab, None, ValueError, "fields\\['x'\\]"),
        ("missing sample dims", {**f, "x": torch.zeros(6, 12)}, lab, None, ValueError, "fields\\['x'\\]"),
        ("batch size", {**f, "y": f["y"][:5]}, lab, None, ValueError, "fields\\['y'\\]"),
        ("dtype", {**f, "x": f["x"].double()}, lab, None, TypeError, "fields\\['x'\\]"),
        ("dtype int", {**f, "y": f["y"].int()}, lab, None, TypeError, "fields\\['y'\\]"),
        (
            "non-contiguous",
            {**f, "x": torch.zeros(6, 4, 3).transpose(1, 2)},
            lab,
            None,
            ValueError,
            "fields\\['x'\\].*contiguous",
        ),
        ("meta device", {**f, "x": meta}, lab, None, ValueError, "fields\\['x'\\].*device"),
        ("numpy array", {**f, "x": f["x"].numpy()}, lab, None, TypeError, "fields\\['x'\\]"),
        ("label too large", f, torch.tensor([0, 1, 2, 3, 0, 1]), None, ValueError, "labels"),
        ("negative label", f, torch.tensor([0, 1, -1, 2, 0, 1]), None, ValueError, "labels"),
        ("labels int32", f, lab.int(), None, TypeError, "labels"),
        ("labels float", f, lab.float(), None, TypeError, "labels"),
        ("labels 2-D", f, lab.reshape(6, 1), None, ValueError, "labels"),
        ("labels 0-D", f, torch.tensor(1), None, ValueError, "labels"),
        ("labels too short", f, lab[:5], None, ValueError, "fields"),
        ("labels non-contiguous", f, (torch.arange(12) % 3)[::2], None, ValueError, "labels"),
        ("labels meta", f, torch.empty(6, dtype=torch.int64, device="meta"), None, ValueError, "labels"),
        ("labels list", f, [0, 1, 2, 0, 1, 2], None, TypeError, "labels"),
        ("weights float64", f, lab, torch.ones(6, dtype=torch.float64), TypeError, "weights"),
        ("weights length", f, lab, torch.ones(5), ValueError, "weights"),
        ("weights 2-D", f, lab, torch.ones(6, 1), ValueError, "weights"),
        ("weights nan", f, lab, torch.tensor([1, 1, math.nan, 1, 1, 1.0]), ValueError, "weights"),
        ("weights inf", f, lab, torch.tensor([1, 1, 1, 1, 1, math.inf]), ValueError, "weights"),
        ("weights meta", f, lab, torch.empty(6, device="meta"), ValueError, "weights"),
        ("weights non-contiguous", f, lab, torch.ones(12)[::2], ValueError, "weights"),
    ]
    return cases


@pytest.mark.parametrize("case", _bad_adds(), ids=lambda c: c[0])
def test_add_rejects_and_changes_nothing(buffer, case):
    desc, fields, labels, weights, exc, name = case
    if desc == "label too large" and buffer.num_classes is None:
        pytest.skip("adaptive quotas accept any label >= 0")
    before = snapshot(buffer)
    with pytest.raises(exc, match=name):
        buffer.add(fields, labels, weights)
    assert_same_snapshot(before, snapshot(buffer))
    # The RNG did not move either: the same future as a buffer that never saw the bad input.
    twin = RehearsalBuffer(8, FIELDS, num_classes=buffer.num_classes, candidates=4, seed=11)
    for step in range(3):
        twin.add(*batch(6, 6 * step))
    buffer.add(*batch(6, 100))
    twin.add(*batch(6, 100))
    assert torch.equal(buffer.sample(5)["x"], twin.sample(5)["x"])


def test_bad_label_index_is_reported(buffer):
    f, _ = batch(6)
    with pytest.raises(ValueError, match=r"labels: .*got -5 at index 4"):
        buffer.add(f, torch.tensor([0, 1, 2, 0, -5, 1]))


# ----------------------------------------------------------------------------- sample


@pytest.mark.parametrize("r", [-1, -100, 2.0, "3", True, None])
def test_sample_rejects_bad_r(buffer, r):
    before = snapshot(buffer)
    with pytest.raises(ValueError, match="r: "):
        buffer.sample(r)
    with pytest.raises(ValueError, match="r: "):
        buffer.allocate(r)
    assert_same_snapshot(before, snapshot(buffer))


def _bad_outs():
    good = {"x": torch.zeros(4, 3, 4), "y": torch.zeros(4, 2, dtype=torch.int64)}
    lab, w = torch.zeros(4, dtype=torch.int64), torch.zeros(4)

    def out(fields=None, labels=lab, weights=w):
        return Samples(
            {**good, **(fields or {})} if fields != "only-x" else {"x": good["x"]}, labels, weights
        )

    return [
        ("plain dict", dict(good), TypeError, "out"),
        ("missing field", out("only-x"), ValueError, "out"),
        ("extra field", out({"z": torch.zeros(4, 1)}), ValueError, "out"),
        ("too few rows", out({"x": torch.zeros(3, 3, 4)}), ValueError, "out\\['x'\\]"),
        ("sample shape", out({"x": torch.zeros(4, 4, 3)}), ValueError, "out\\['x'\\]"),
        ("dtype", out({"y": torch.zeros(4, 2)}), TypeError, "out\\['y'\\]"),
        ("non-contiguous", out({"x": torch.zeros(4, 4, 3).transpose(1, 2)}), ValueError, "out\\['x'\\]"),
        ("meta", out({"x": torch.empty(4, 3, 4, device="meta")}), ValueError, "out\\['x'\\]"),
        ("labels short", out(labels=lab[:3]), ValueError, "out.labels"),
        ("labels dtype", out(labels=lab.int()), TypeError, "out.labels"),
        ("weights dtype", out(weights=w.double()), TypeError, "out.weights"),
        ("weights 2-D", out(weights=torch.zeros(4, 1)), ValueError, "out.weights"),
    ]


@pytest.mark.parametrize("case", _bad_outs(), ids=lambda c: c[0])
def test_sample_rejects_bad_out_and_changes_nothing(buffer, case):
    _desc, out, exc, name = case
    before = snapshot(buffer)
    out_before = {n: t.clone() for n, t in out.items() if t.device.type == "cpu"}
    with pytest.raises(exc, match=name):
        buffer.sample(4, out=out)
    assert_same_snapshot(before, snapshot(buffer))
    for n, t in out_before.items():
        assert torch.equal(out[n], t), "the caller's tensors are untouched"


# ----------------------------------------------------------------------------- load_state_dict


def test_load_state_dict_rejects_mismatch_and_changes_nothing(buffer):
    other = RehearsalBuffer(8, FIELDS, num_classes=buffer.num_classes, candidates=4, seed=5)
    other.add(*batch(8, 50))
    good = other.state_dict()
    before = snapshot(buffer)

    bad_capacity = {**good, "capacity": 9}
    with pytest.raises(ValueError, match="capacity"):
        buffer.load_state_dict(bad_capacity)
    bad_classes = {**good, "num_classes": 7}
    with pytest.raises(ValueError, match="num_classes"):
        buffer.load_state_dict(bad_classes)
    bad_fields = {**good, "fields": {"x": ((3, 4), torch.float64), "y": ((2,), torch.int64)}}
    with pytest.raises(ValueError, match="fields"):
        buffer.load_state_dict(bad_fields)

    classes = [list(c) for c in good["policy"]["classes"]]
    nonempty = next(c for c in classes if len(c[2]) > 1)
    nonempty[2] = [nonempty[2][0]] * len(nonempty[2])  # duplicate slots
    bad_policy = {**good, "policy": {**good["policy"], "classes": [tuple(c) for c in classes]}}
    with pytest.raises(ValueError, match="state"):
        buffer.load_state_dict(bad_policy)

    samples = good["samples"]
    short = {**good, "samples": {**samples, "labels": samples["labels"][:-1]}}
    with pytest.raises(ValueError):
        buffer.load_state_dict(short)
    assert_same_snapshot(before, snapshot(buffer))

    buffer.load_state_dict(good)
    assert_same_snapshot(snapshot(other), snapshot(buffer))
