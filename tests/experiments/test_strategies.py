"""Strategy pieces that need no ranks: rehearsal's balanced replay weights, DER++'s two draws,
the epoch in which DER offers its samples."""

from __future__ import annotations

import torch

from reverie.experiments.config import ExperimentConfig
from reverie.experiments.strategies.der import DarkExperienceReplay, DarkExperienceReplayPlusPlus
from reverie.experiments.strategies.rehearsal import Rehearsal
from reverie.samples import Samples


def _rehearsal(**options: object) -> Rehearsal:
    strategy = object.__new__(Rehearsal)  # no model or buffer: only the weighting is tested
    strategy.cfg = ExperimentConfig(**options)  # type: ignore[arg-type]
    return strategy


def test_balanced_replay_weights_give_new_and_replayed_rows_equal_total_weight() -> None:
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 1.0])  # b = 4 new rows, r' = 2 replayed
    out = _rehearsal(batch_size=4).replay_weights(w, 2)
    assert torch.allclose(out, torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 2.0]))
    assert torch.equal(w, torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 1.0])), "the loader's tensor is left alone"
    ones = torch.ones(7)  # a short last minibatch: b' = 4 new rows, r' = 3 replayed
    out = _rehearsal(batch_size=32).replay_weights(ones, 3)
    assert torch.isclose(out[:4].sum(), out[4:].sum())


def test_no_scaling_without_replayed_rows_or_with_balance_off() -> None:
    w = torch.ones(5)
    assert _rehearsal().replay_weights(w, 0) is w
    assert _rehearsal(replay_balance=False).replay_weights(w, 2) is w


class _FakeDraws:
    """Stands in for the distributed buffer: counts the draws requested."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    def get_remote_samples(self, r: int) -> int:
        self.requests.append(r)
        return r


def _der(cls: type[DarkExperienceReplay], alpha: float, beta: float) -> DarkExperienceReplay:
    strategy = object.__new__(cls)  # a plain model, no DDP and no buffer
    torch.manual_seed(0)
    strategy.model = torch.nn.Linear(3, 4)  # type: ignore[assignment]
    strategy.optimizer = torch.optim.SGD(strategy.model.parameters(), lr=0.1)
    strategy.device = torch.device("cpu")
    strategy.cfg = ExperimentConfig(clip_grad=0)
    strategy.alpha, strategy.beta = alpha, beta
    strategy.buffer = _FakeDraws()
    return strategy


def _samples(x: torch.Tensor, labels: list[int]) -> Samples:
    n = len(labels)
    fields = {"x": x, "logits": torch.zeros(n, 4)}
    return Samples(fields, torch.tensor(labels), torch.ones(n), torch.zeros(n, dtype=torch.int32))


def test_derpp_draws_two_independent_batches_der_one() -> None:
    # issue 18: DER++ takes its label term from a second draw, as the paper does
    derpp = _der(DarkExperienceReplayPlusPlus, 0.1, 0.5)
    assert derpp.request(8) == [8, 8] and derpp.buffer.requests == [8, 8]
    der = _der(DarkExperienceReplay, 0.3, 0.0)
    assert der.request(8) == [8]


def test_derpp_label_term_uses_the_second_draw_only() -> None:
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    logit_rows, label_rows = _samples(torch.randn(3, 3), [2, 2, 2]), _samples(torch.randn(2, 3), [3, 3])
    only_labels = _der(DarkExperienceReplayPlusPlus, 0.0, 1.0)
    before = only_labels.model.weight.detach().clone()
    only_labels.replay_step(x, y, logit_rows, label_rows)
    step = only_labels.model.weight.detach() - before
    reference = _der(DarkExperienceReplayPlusPlus, 0.0, 1.0)  # the same loss by hand
    out = reference.model(torch.cat([x, label_rows["x"]]))
    loss = torch.nn.functional.cross_entropy(out[:2], y) + torch.nn.functional.cross_entropy(
        out[2:], label_rows.labels
    )
    loss.backward()
    assert torch.allclose(step, -0.1 * reference.model.weight.grad)  # type: ignore[operator]


def test_der_offers_every_epoch_online_and_the_last_one_only_in_past_mode() -> None:
    der = _der(DarkExperienceReplay, 0.3, 0.0)
    der.cfg, der.replay = ExperimentConfig(epochs=3), "online"
    assert [der.offers(e) for e in range(3)] == [True, True, True]
    der.replay = "past"  # stored logits of a model that has seen the task
    assert [der.offers(e) for e in range(3)] == [False, False, True]
