"""``replay="past"`` in the local buffer and in a one-process distributed buffer: the current
task's candidates are staged, no draw returns them before ``end_task()``, and draws stay
uniform over the committed samples. Fixed seeds; chi-square tests use alpha = 0.001."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from reverie import DistributedRehearsalBuffer, RehearsalBuffer, RehearsalLoader
from reverie.state import StateError

ALPHA = 1e-3
FIELDS = {"id": ((), torch.int64)}


def task_rows(task: int, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """n rows of task ``task``: ids ``task * 1000 + i``, labels ``2 * task + i % 2``."""
    i = torch.arange(n, dtype=torch.int64)
    return {"id": task * 1000 + i}, 2 * task + i % 2


def test_past_draws_only_committed_tasks_and_uniformly() -> None:
    buf = RehearsalBuffer(60, FIELDS, replay="past", candidates=8, seed=3)
    fields, labels = task_rows(0, 40)
    for i in range(0, 40, 8):
        assert buf.add({"id": fields["id"][i : i + 8]}, labels[i : i + 8]) == 8
        assert len(buf.sample(16)) == 0, "nothing is drawable before the first boundary"
    assert (len(buf), buf.staged) == (0, 40)
    assert buf.end_task() == 40
    assert (len(buf), buf.staged) == (40, 0)
    committed = buf.sample(60)["id"]
    assert sorted(committed.tolist()) == list(range(40))

    counts = np.zeros(40)
    fields, labels = task_rows(1, 400)
    for step in range(400):  # task 1 is staged step by step while draws replay task 0 only
        buf.add({"id": fields["id"][step : step + 1]}, labels[step : step + 1])
        draw = buf.sample(10)
        assert len(draw) == 10 and int(draw.labels.max()) <= 1, "a current-task row was drawn"
        np.add.at(counts, draw["id"].numpy(), 1)
    p = chisquare(counts).pvalue
    assert p > ALPHA, f"draws over the committed samples not uniform (p={p:.2e})"

    assert buf.end_task() == buf.capacity  # the stage kept 30 per class of task 1
    classes = buf.class_counts()
    assert classes == {0: 15, 1: 15, 2: 15, 3: 15}, classes
    assert set(buf.sample(60).labels.tolist()) == {0, 1, 2, 3}


def test_online_is_the_default_and_end_task_does_nothing() -> None:
    buf = RehearsalBuffer(20, FIELDS, seed=1)
    fields, labels = task_rows(0, 6)
    buf.add(fields, labels)
    assert buf.replay == "online" and len(buf) == 6 and buf.staged == 0
    assert buf.end_task() == 0 and len(buf) == 6


@pytest.mark.parametrize("replay", ["Past", "", None, 1])
def test_bad_replay_names_the_argument(replay: object) -> None:
    with pytest.raises(ValueError, match="replay"):
        RehearsalBuffer(20, FIELDS, replay=replay)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replay"):
        DistributedRehearsalBuffer(20, FIELDS, replay=replay)  # type: ignore[arg-type]


def test_state_dict_carries_the_stage_and_the_same_future_draws() -> None:
    buf = RehearsalBuffer(30, FIELDS, replay="past", candidates=4, seed=5)
    for task in range(2):
        fields, labels = task_rows(task, 24)
        for i in range(0, 24, 6):
            buf.add({"id": fields["id"][i : i + 6]}, labels[i : i + 6])
        if task == 0:
            buf.end_task()
    state = buf.state_dict()
    assert state["replay"] == "past" and len(state["stage"]["samples"]["labels"]) == buf.staged > 0

    twin = RehearsalBuffer(30, FIELDS, replay="past", candidates=4, seed=99)
    twin.load_state_dict(state)
    assert (len(twin), twin.staged) == (len(buf), buf.staged)
    assert torch.equal(twin.sample(8)["id"], buf.sample(8)["id"])
    assert twin.end_task() == buf.end_task()
    assert torch.equal(twin.sample(30)["id"], buf.sample(30)["id"])


def test_bad_states_change_nothing() -> None:
    buf = RehearsalBuffer(30, FIELDS, replay="past", seed=5)
    fields, labels = task_rows(0, 10)
    buf.add(fields, labels)
    buf.end_task()
    buf.add(*task_rows(1, 6))
    good = buf.state_dict()
    before = (len(buf), buf.staged, buf.sample(30)["id"].sort().values)

    online = RehearsalBuffer(30, FIELDS, seed=5)
    with pytest.raises(ValueError, match="replay"):
        online.load_state_dict(good)
    with pytest.raises(ValueError, match="replay"):
        buf.load_state_dict(online.state_dict())
    no_stage = {k: v for k, v in good.items() if k != "stage"}
    with pytest.raises(StateError, match="stage"):
        buf.load_state_dict(no_stage)
    bad_stage = dict(good, stage=dict(good["stage"], policy=dict(good["stage"]["policy"], classes=[])))
    with pytest.raises(StateError, match="stage"):
        buf.load_state_dict(bad_stage)
    assert (len(buf), buf.staged) == before[:2]
    assert torch.equal(buf.sample(30)["id"].sort().values, before[2])


def test_distributed_one_process_stages_until_end_task(tmp_path) -> None:
    with DistributedRehearsalBuffer(40, FIELDS, replay="past", candidates=4, seed=2) as dbuf:
        fields, labels = task_rows(0, 16)
        dbuf.add(fields, labels)
        assert len(dbuf.get_remote_samples(8).wait()) == 0
        assert (len(dbuf), dbuf.staged) == (0, 4)
        assert dbuf.end_task() == 4
        dbuf.add(*task_rows(1, 8))
        draw = dbuf.get_remote_samples(8).wait()
        assert len(draw) == 4 and int(draw.labels.max()) <= 1
        dbuf.save(tmp_path / "ckpt")
        staged = dbuf.staged
    with DistributedRehearsalBuffer.load(tmp_path / "ckpt") as back:
        assert back.replay == "past" and (len(back), back.staged) == (4, staged)
        assert back.end_task() == staged
        ids = back.get_remote_samples(8).wait()["id"]
        assert len(back) == 4 + staged == len(ids) and int((ids >= 1000).sum()) == staged


def test_loader_end_task_and_offer() -> None:
    stream = [({"id": torch.arange(4) + 4 * i}, torch.full((4,), i % 2)) for i in range(6)]
    with DistributedRehearsalBuffer(40, FIELDS, replay="past", seed=2) as dbuf:
        loader = RehearsalLoader([(b["id"], y) for b, y in stream], dbuf, representatives=3)
        assert [len(y) for _, y, _ in loader] == [4] * 6, "no replay during the first task"
        assert loader.end_task() == 24
        loader.offer = False
        sizes = [(len(y), loader.drawn) for _, y, _ in loader]
        assert sizes[0] == (4, 0) and all(s == (7, 3) for s in sizes[1:])
        assert dbuf.staged == 0, "offer=False adds nothing"
        with pytest.raises(TypeError, match="offer"):
            RehearsalLoader([], dbuf, offer=1)  # type: ignore[arg-type]


def test_hostile_past_checkpoints_are_refused(tmp_path) -> None:
    import json

    from reverie.checkpoint import CheckpointError

    with DistributedRehearsalBuffer(40, FIELDS, replay="past", seed=2) as dbuf:
        dbuf.add(*task_rows(0, 6))
        dbuf.end_task()
        dbuf.add(*task_rows(1, 4))
        dbuf.save(tmp_path / "ckpt")
    manifest = tmp_path / "ckpt" / "manifest.json"
    good = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(good, replay="future")))
    with pytest.raises(CheckpointError, match="replay"):
        DistributedRehearsalBuffer.load(tmp_path / "ckpt")
    manifest.write_text(json.dumps(good))
    rank_file = tmp_path / "ckpt" / "rank-0.pt"
    state = torch.load(rank_file, weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "stage"}, rank_file)
    with pytest.raises(CheckpointError, match="stage"):
        DistributedRehearsalBuffer.load(tmp_path / "ckpt")
    torch.save(state, rank_file)
    with pytest.raises(TypeError, match="replay"):  # not overridable: staged rows would be lost
        DistributedRehearsalBuffer.load(tmp_path / "ckpt", replay="online")


def test_passes_draw_every_sample_once_per_pass_and_stay_uniform() -> None:
    buf = RehearsalBuffer(40, FIELDS, replay="past", draws="passes", seed=4)
    buf.add(*task_rows(0, 40))
    buf.end_task()
    counts = np.zeros(40)
    for _ in range(300):  # passes of 4 draws of 10: each a permutation of the 40 samples
        ids = torch.cat([buf.sample(10)["id"] for _ in range(4)])
        assert sorted(ids.tolist()) == list(range(40)), "a sample drawn twice in one pass"
        np.add.at(counts, ids.numpy(), 1)
    assert set(counts) == {300}
    within = np.zeros(40)  # the first draw of every pass: uniform on its own
    for _ in range(2000):
        np.add.at(within, buf.sample(10)["id"].numpy(), 1)
        for _ in range(3):
            buf.sample(10)
    p = chisquare(within).pvalue
    assert p > ALPHA, f"first draws of the passes not uniform (p={p:.2e})"


def test_passes_state_round_trip_and_bad_draws() -> None:
    buf = RehearsalBuffer(30, FIELDS, draws="passes", seed=6)
    buf.add(*task_rows(0, 30))
    buf.sample(7)
    twin = RehearsalBuffer(30, FIELDS, draws="passes", seed=0)
    twin.load_state_dict(buf.state_dict())
    for _ in range(10):
        assert torch.equal(twin.sample(7)["id"], buf.sample(7)["id"])
    with pytest.raises(ValueError, match="draws"):
        RehearsalBuffer(30, FIELDS).load_state_dict(buf.state_dict())
    bad = buf.state_dict()
    bad["policy"] = dict(bad["policy"], **{"pass": (1, 31, 30)})
    with pytest.raises(StateError, match="pass"):
        buf.load_state_dict(bad)
    for draws in ("pass", None, True):
        with pytest.raises(ValueError, match="draws"):
            RehearsalBuffer(30, FIELDS, draws=draws)  # type: ignore[arg-type]
