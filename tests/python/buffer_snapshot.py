"""Snapshots of a RehearsalBuffer's observable state, for before/after comparisons."""

from __future__ import annotations

import torch

from reverie import RehearsalBuffer


def snapshot(buffer: RehearsalBuffer) -> dict:
    """Everything observable about a buffer, cloned, for before/after comparisons."""
    state = buffer.state_dict()
    samples = state["samples"]
    return {
        "len": len(buffer),
        "class_counts": buffer.class_counts(),
        "policy": state["policy"],
        "fields": {n: t.clone() for n, t in samples["fields"].items()},
        "labels": samples["labels"].clone(),
        "weights": samples["weights"].clone(),
    }


def assert_same_snapshot(a: dict, b: dict) -> None:
    assert a["len"] == b["len"]
    assert a["class_counts"] == b["class_counts"]
    assert a["policy"] == b["policy"]
    assert a["fields"].keys() == b["fields"].keys()
    for name in a["fields"]:
        assert torch.equal(a["fields"][name], b["fields"][name]), name
    assert torch.equal(a["labels"], b["labels"])
    assert torch.equal(a["weights"], b["weights"])
