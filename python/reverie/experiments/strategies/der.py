"""``der`` and ``derpp``: Dark Experience Replay (Buzzega et al., NeurIPS 2020).

The buffer stores each sample's logits at insertion time as an extra field ``"logits"``
(float32 ``[num_classes]``). Loss per step, with ``m`` replayed samples:

* der:   ``CE(new) + alpha * MSE(logits_now(replay), stored_logits)``
* derpp: the same ``+ beta * CE(logits_now(replay2), replay2 labels)``, where ``replay2`` is
  a second draw, independent of ``replay``, as in the paper (Buzzega et al., Alg. 1); until
  issue 18 both terms used one draw.

A step's new samples are offered to the buffer after its optimizer step, with the logits
of its forward pass. The draws for step ``i + 1`` are requested (``get_remote_samples``)
before step ``i``'s forward pass and waited for at step ``i + 1``, so transfers overlap
compute. The received views are valid until the second-next request: DER uses its one draw
before that; DER++, whose two draws per step are the buffer's two in flight, copies them
(``r`` rows each).

``replay`` and ``replay_draws``: the buffer's modes, as for ``rehearsal``. With ``past`` a
task's candidates are staged and committed at the task boundary (``end_task``), so every
draw replays finished tasks only. Each sample is offered once, as rehearsal does, but in
the task's last epoch, not its first: the stored logits are the replay's targets, and the
first epoch's come from a model that has not learnt the task yet (its first steps' from the
previous task's model). On mnist (2 ranks, seeds 0-2, 5 tasks, 3 epochs) first-epoch
offers gave DER 27.8% final mean top-1 and DER++ 81.2%, last-epoch offers 55.4% and 81.5%
(``online``: 65.2% and 84.3%; docs/experiments-mnist.md). ``passes`` draws each stored
sample once per pass over the buffer.

``deterministic``: the inserts and draws happen at defined points
(:class:`.lockstep.Lockstep`), so two runs with the same seed, rank count and engine give
the same accuracy matrices: every step, the ranks draw in rank order (DER++ both its draws
in its turn), train, then insert step ``i``'s samples and logits (and flush) on every rank
before any rank draws for step ``i + 1``. No overlap of draws with compute: slower.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import Strategy, TrainingContext
from .lockstep import Lockstep
from .replay_buffer import buffer_report, make_buffer


class DarkExperienceReplay(Strategy):
    """DER: replay with logit matching."""

    name = "der"
    uses_labels = False

    def __init__(self, ctx: TrainingContext) -> None:
        super().__init__(ctx)
        self.alpha = self.cfg.der_alpha(self.name)
        self.beta = self.cfg.beta if self.uses_labels else 0.0
        fields = {
            "x": (ctx.data.input_shape, torch.float32),
            "logits": ((ctx.data.num_classes,), torch.float32),
        }
        self.replay, draws = self.cfg.replay_modes(self.name)
        self.buffer = make_buffer(ctx, fields, self.replay, draws)

    def replay_step(
        self, x: torch.Tensor, y: torch.Tensor, replay: Any, labelled: Any = None
    ) -> torch.Tensor:
        """One optimizer step on new ``(x [b, ...], y [b])`` plus ``replay`` (Samples, ``m``
        rows, for logit matching) and, for DER++, ``labelled`` (Samples, ``k`` rows, for the
        cross-entropy on replayed labels); one forward pass over all rows.

        Returns the logits of the new samples ``[b, num_classes]`` (detached, on the CPU).
        """
        b = y.shape[0]
        m = int(replay.labels.shape[0])
        k = 0 if labelled is None else int(labelled.labels.shape[0])
        parts = [x] + ([replay["x"]] if m else []) + ([labelled["x"]] if k else [])
        out = self.model(torch.cat(parts).to(self.device, non_blocking=True))
        loss = F.cross_entropy(out[:b], y.to(self.device))
        if m:
            w = replay.weights.to(self.device)[:, None]
            stored = replay["logits"].to(self.device)
            loss = loss + self.alpha * (w * (out[b : b + m] - stored) ** 2).mean()
        if k and self.beta:
            ce = F.cross_entropy(out[b + m :], labelled.labels.to(self.device), reduction="none")
            loss = loss + self.beta * (ce * labelled.weights.to(self.device)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip_and_step()
        return out[:b].detach().float().cpu().contiguous()

    def train_task(self, task: int) -> None:
        self.optimizer = self.task_optimizer(task)
        r = self.ctx.per_rank(self.cfg.representatives)
        loader = self.batches(self.ctx.train_indices[task], salt=task)
        if self.cfg.deterministic:
            self.train_lockstep(task, loader, r)
            return
        timeout = self.cfg.buffer_timeout
        pending = self.request(r)
        for epoch in self.epochs(task):
            offer = self.offers(epoch)
            for x, y in loader:
                draws = [p.wait(timeout=timeout) for p in pending]
                if len(draws) > 1:  # the next two requests reuse both receive blocks
                    draws = [d.clone() for d in draws]
                pending = self.request(r)  # next step's draws, overlap this step
                logits = self.replay_step(x, y, *draws)
                if offer:
                    self.buffer.add({"x": x.contiguous(), "logits": logits}, y.contiguous())
        for p in pending:
            p.wait(timeout=timeout)
        self.buffer.end_task()  # past: this task's candidates become drawable; online: a flush

    def train_lockstep(self, task: int, loader: Any, r: int) -> None:
        """``train_task`` with the draws and inserts at defined points (``deterministic``):
        draw in rank order, train, insert on every rank; commit at the task's end."""
        lockstep = Lockstep(self.buffer, self.ctx.group, self.cfg.buffer_timeout)
        sizes = [r] * (2 if self.uses_labels else 1)
        for epoch in self.epochs(task):
            offer = self.offers(epoch)
            for x, y in loader:
                logits = self.replay_step(x, y, *lockstep.draw(sizes))
                lockstep.insert({"x": x.contiguous(), "logits": logits}, y.contiguous(), offer)
        lockstep.end_task()

    def offers(self, epoch: int) -> bool:
        """Whether epoch ``epoch``'s samples are offered to the buffer: always ``online``;
        with ``past`` in the task's last epoch only (each sample is staged once, with the
        logits of a model that has seen the task; rehearsal offers in the first epoch)."""
        return self.replay != "past" or epoch == self.cfg.epochs - 1

    def request(self, r: int) -> list[Any]:
        """Start this step's independent global draws of ``r`` rows: one for DER, two for
        DER++ (logit matching, labels)."""
        return [self.buffer.get_remote_samples(r) for _ in range(2 if self.uses_labels else 1)]

    def buffer_info(self) -> dict[str, Any]:
        return buffer_report(self.buffer, self.cfg.buffer_size, self.ctx.group.world_size)

    def close(self) -> None:
        self.buffer.close()


class DarkExperienceReplayPlusPlus(DarkExperienceReplay):
    """DER++: DER plus cross-entropy on the replayed labels."""

    name = "derpp"
    uses_labels = True
