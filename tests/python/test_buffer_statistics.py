"""Statistical properties of the class-balanced reservoir and of uniform draws.

Every test uses fixed seeds, so it is deterministic; the chi-square tests use alpha = 0.001.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from reverie import RehearsalBuffer

ALPHA = 1e-3
FIELDS = {"pos": ((), torch.int64), "pad": ((3,), torch.float32)}


def assert_uniform(counts: np.ndarray, what: str) -> None:
    counts = np.asarray(counts, dtype=np.float64)
    assert counts.sum() > 0
    p = chisquare(counts).pvalue
    assert p > ALPHA, f"{what}: not uniform (p={p:.2e}), counts={counts.tolist()}"


def offer(buf: RehearsalBuffer, positions: list[int], labels: list[int], chunk: int = 8) -> None:
    """Offers the stream in minibatches of `chunk`; `pos` records each sample's position in its class stream."""
    for i in range(0, len(labels), chunk):
        pos = torch.tensor(positions[i : i + chunk], dtype=torch.int64)
        lab = torch.tensor(labels[i : i + chunk], dtype=torch.int64)
        buf.add({"pos": pos, "pad": torch.zeros(len(lab), 3)}, lab)


def class_stream(labels: list[int]) -> list[int]:
    """Position of each element within its own class's stream."""
    seen: Counter = Counter()
    out = []
    for y in labels:
        out.append(seen[y])
        seen[y] += 1
    return out


def stored(buf: RehearsalBuffer) -> list[tuple[int, int]]:
    s = buf.state_dict()["samples"]
    return list(zip(s["labels"].tolist(), s["fields"]["pos"].tolist(), strict=True))


def test_fixed_quota_reservoir_is_uniform_over_each_class_stream():
    # An imbalanced, interleaved stream: 30 samples of class 0, 15 of class 1, 45 of class 2.
    rng = np.random.default_rng(0)
    labels = rng.permutation([0] * 30 + [1] * 15 + [2] * 45).tolist()
    positions = class_stream(labels)
    per_class = {0: 30, 1: 15, 2: 45}
    hits = {c: np.zeros(n) for c, n in per_class.items()}
    seeds = 400
    for seed in range(seeds):
        buf = RehearsalBuffer(15, FIELDS, num_classes=3, seed=seed)
        offer(buf, positions, labels)
        assert buf.class_counts() == {0: 5, 1: 5, 2: 5}, "class balance with fixed quotas"
        for y, p in stored(buf):
            hits[y][p] += 1
    for c, h in hits.items():
        assert h.sum() == seeds * 5
        assert_uniform(h, f"class {c} stream positions")


def test_adaptive_quotas_shrink_and_stay_uniform():
    # Classes arrive one after another (class-incremental): 24 samples of each.
    labels = [0] * 24 + [1] * 24 + [2] * 24
    positions = class_stream(labels)
    hits = {c: np.zeros(24) for c in range(3)}
    seeds = 300
    for seed in range(seeds):
        buf = RehearsalBuffer(12, FIELDS, seed=seed)
        offer(buf, positions[:24], labels[:24])
        assert buf.class_counts() == {0: 12}
        offer(buf, positions[24:48], labels[24:48])
        assert buf.class_counts() == {0: 6, 1: 6}, "shrunk to capacity // classes_seen"
        offer(buf, positions[48:], labels[48:])
        assert buf.class_counts() == {0: 4, 1: 4, 2: 4}
        for y, p in stored(buf):
            hits[y][p] += 1
    for c, h in hits.items():
        assert h.sum() == seeds * 4
        assert_uniform(h, f"adaptive class {c} stream positions")


def test_adaptive_quotas_with_interleaved_arrivals_stay_uniform():
    # Class 0 alone, then classes 1 and 2 interleaved: class 0 shrinks while the others fill.
    rng = np.random.default_rng(1)
    labels = [0] * 20 + rng.permutation([1] * 20 + [2] * 20).tolist()
    positions = class_stream(labels)
    hits = {c: np.zeros(20) for c in range(3)}
    seeds = 300
    for seed in range(seeds):
        buf = RehearsalBuffer(9, FIELDS, seed=1000 + seed)
        offer(buf, positions, labels, chunk=5)
        assert buf.class_counts() == {0: 3, 1: 3, 2: 3}
        for y, p in stored(buf):
            hits[y][p] += 1
    for c, h in hits.items():
        assert_uniform(h, f"interleaved adaptive class {c}")


def test_sample_is_uniform_over_slots():
    buf = RehearsalBuffer(40, FIELDS, seed=3)
    offer(buf, list(range(25)), [0] * 25)
    assert len(buf) == 25
    member = np.zeros(25)
    first = np.zeros(25)
    out = buf.allocate(6)
    for _ in range(3000):
        s = buf.sample(6, out=out)
        pos = s["pos"].tolist()
        assert len(set(pos)) == 6, "without replacement"
        member[pos] += 1
        first[pos[0]] += 1
    assert_uniform(member, "sample membership")
    assert_uniform(first, "first drawn position")


def test_sample_pairs_are_uniform():
    # Without replacement, every unordered pair of 8 stored samples is equally likely for r=2.
    buf = RehearsalBuffer(8, FIELDS, seed=4)
    offer(buf, list(range(8)), [0] * 8)
    pairs: Counter = Counter()
    out = buf.allocate(2)
    for _ in range(5600):
        a, b = buf.sample(2, out=out)["pos"].tolist()
        assert a != b
        pairs[(min(a, b), max(a, b))] += 1
    assert len(pairs) == 28
    assert_uniform(np.array(list(pairs.values())), "pairs")


def test_candidates_exactly_c_per_add_uniform_over_rows():
    b, c, adds = 10, 3, 1000
    buf = RehearsalBuffer(b * adds, FIELDS, candidates=c, seed=5)
    rows = {"pos": torch.arange(b), "pad": torch.zeros(b, 3)}
    labels = torch.zeros(b, dtype=torch.int64)
    for i in range(adds):
        assert buf.add(rows, labels) == c
        assert len(buf) == c * (i + 1)
    counts = np.bincount(buf.state_dict()["samples"]["fields"]["pos"].numpy(), minlength=b)
    assert counts.sum() == c * adds
    assert_uniform(counts, "candidate rows")


def test_candidates_distinct_within_one_add():
    buf = RehearsalBuffer(1000, FIELDS, candidates=4, seed=6)
    for _ in range(50):
        before = len(buf)
        buf.add({"pos": torch.arange(10), "pad": torch.zeros(10, 3)}, torch.zeros(10, dtype=torch.int64))
        new = buf.state_dict()["samples"]["fields"]["pos"][before:].tolist()
        assert len(new) == 4 and len(set(new)) == 4


def _run(seed: int) -> tuple[dict, list[list[int]]]:
    buf = RehearsalBuffer(16, FIELDS, num_classes=4, candidates=5, seed=seed)
    g = torch.Generator().manual_seed(99)  # the inputs are the same for every seed
    draws = []
    for step in range(20):
        labels = torch.randint(0, 4, (12,), generator=g)
        pos = torch.arange(step * 12, step * 12 + 12)
        buf.add({"pos": pos, "pad": torch.rand(12, 3, generator=g)}, labels)
        draws.append(buf.sample(6)["pos"].tolist())
    return buf.state_dict(), draws


def test_same_seed_same_contents_and_draws():
    s1, d1 = _run(123)
    s2, d2 = _run(123)
    assert d1 == d2
    assert s1["policy"] == s2["policy"]
    for name in FIELDS:
        assert torch.equal(s1["samples"]["fields"][name], s2["samples"]["fields"][name])
    assert torch.equal(s1["samples"]["labels"], s2["samples"]["labels"])


@pytest.mark.parametrize("other", [124, 2**63 + 5])
def test_different_seeds_differ(other):
    s1, d1 = _run(123)
    s2, d2 = _run(other)
    assert d1 != d2
    assert not torch.equal(s1["samples"]["fields"]["pos"], s2["samples"]["fields"]["pos"])
