"""RehearsalBuffer from several threads at once, and bit-exact state_dict round trips."""

from __future__ import annotations

import threading

import torch

from reverie import RehearsalBuffer

NUM_CLASSES = 5
FIELDS = {"img": ((3, 16, 16), torch.float32), "code": ((7,), torch.int16), "tag": ((), torch.int64)}


def make_batch(first_id: int, n: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Every element of every field encodes (id, label); the weight encodes the id too."""
    ids = torch.arange(first_id, first_id + n)
    labels = ids % NUM_CLASSES
    code = ids * 8 + labels  # < 2**24: exact in float32
    fields = {
        "img": code.to(torch.float32).reshape(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous(),
        "code": (code % 30000).to(torch.int16).reshape(n, 1).expand(n, 7).contiguous(),
        "tag": code.clone(),
    }
    return fields, labels, (ids % 1000).to(torch.float32)


def check_consistent(s) -> None:
    """Each sample's fields, label and weight come from one and the same input row."""
    k = len(s)
    code = s["tag"]
    assert torch.equal(s["img"], code.to(torch.float32).reshape(k, 1, 1, 1).expand(k, 3, 16, 16))
    assert torch.equal(s["code"], (code % 30000).to(torch.int16).reshape(k, 1).expand(k, 7))
    assert torch.equal(s.labels, code % 8)
    assert torch.equal(s.weights, ((code // 8) % 1000).to(torch.float32))
    assert len(set(code.tolist())) == k, "without replacement"


def run_threads(targets) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                start.wait(timeout=30)
                fn()
            except BaseException as e:  # reported in the main thread
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def test_concurrent_add_and_sample_keep_samples_intact():
    buf = RehearsalBuffer(200, FIELDS, num_classes=NUM_CLASSES, candidates=24, seed=1)
    steps = 150

    def adder(t: int):
        def run():
            for step in range(steps):
                buf.add(*make_batch((t * steps + step) * 32, 32))

        return run

    def sampler():
        out = buf.allocate(48)
        for step in range(steps):
            s = buf.sample(48, out=out) if step % 2 else buf.sample(48)
            check_consistent(s)
            counts = buf.class_counts()
            assert sum(counts.values()) <= 200

    run_threads([adder(0), adder(1), adder(2), sampler, sampler])
    assert len(buf) == 200
    assert buf.class_counts() == dict.fromkeys(range(NUM_CLASSES), 40)
    check_consistent(buf.sample(200))
    # The policy agrees with the stored labels slot by slot.
    state = buf.state_dict()
    for label, _seen, members in state["policy"]["classes"]:
        assert (state["samples"]["labels"][members] == label).all()


def test_concurrent_adds_store_every_offer_when_not_full():
    buf = RehearsalBuffer(4 * 100 * 10, FIELDS, seed=2)

    def adder(t: int):
        return lambda: [buf.add(*make_batch((t * 100 + i) * 10, 10)) for i in range(100)]

    run_threads([adder(t) for t in range(4)])
    assert len(buf) == 4000
    s = buf.state_dict()["samples"]
    assert sorted((s["fields"]["tag"] // 8).tolist()) == list(range(4000))


def _build(seed: int) -> RehearsalBuffer:
    buf = RehearsalBuffer(60, FIELDS, candidates=10, seed=seed)  # adaptive quotas
    for step in range(30):
        buf.add(*make_batch(step * 16, 16))
    return buf


def _future(buf: RehearsalBuffer) -> list[list[int]]:
    draws = []
    for step in range(30, 60):
        fields, labels, _weights = make_batch(step * 16, 16)
        labels = labels + step // 10  # new classes keep arriving
        fields["tag"] = fields["tag"] - (fields["tag"] % 8) + labels
        buf.add(fields, labels)
        draws.append(buf.sample(12)["tag"].tolist())
    return draws


def test_state_dict_round_trip_gives_the_same_future():
    original = _build(seed=3)
    state = original.state_dict()
    restored = RehearsalBuffer(60, FIELDS, candidates=10, seed=999)  # the seed comes from the state
    restored.add(*make_batch(10_000, 16))  # existing contents are replaced
    restored.load_state_dict(state)
    assert len(restored) == len(original)
    assert restored.class_counts() == original.class_counts()
    a, b = original.state_dict(), restored.state_dict()
    assert a["policy"] == b["policy"]
    for name in FIELDS:
        assert torch.equal(a["samples"]["fields"][name], b["samples"]["fields"][name])
    assert torch.equal(a["samples"]["weights"], b["samples"]["weights"])
    assert _future(original) == _future(restored)

    # ...and the same as a buffer that was never interrupted.
    assert _future(_build(seed=3)) == _future(_build(seed=3))
    uninterrupted = _build(seed=3)
    interrupted = RehearsalBuffer(60, FIELDS, candidates=10, seed=3)
    interrupted.load_state_dict(_build(seed=3).state_dict())
    assert _future(uninterrupted) == _future(interrupted)


def test_state_dict_survives_torch_save(tmp_path):
    buf = _build(seed=4)
    path = tmp_path / "buffer.pt"
    torch.save(buf.state_dict(), path)
    restored = RehearsalBuffer(60, FIELDS, candidates=10, seed=4)
    restored.load_state_dict(torch.load(path, weights_only=False))
    assert _future(buf) == _future(restored)
