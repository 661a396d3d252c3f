"""Training-loop integration: minibatches of b new samples plus r' representatives.

The draw for step i+1 is requested before step i is handed to the caller, so it travels
while the model computes; the loop only waits when it has not arrived by the next step.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from reverie.distributed import DistributedRehearsalBuffer, DrawHandle
from reverie.samples import Samples
from reverie.stats import StepStats

Fields = torch.Tensor | dict[str, torch.Tensor]


def concat_draw(
    fields: Mapping[str, torch.Tensor] | torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    draw: Samples,
    out: Samples | None = None,
) -> Samples:
    """The minibatch (``[b, ...]``) followed by a draw's k samples, as Samples of b + k rows.

    With ``out`` (e.g. from ``dbuf.schema.allocate(b_max + r)``) the rows are written into
    its tensors and views of the first b + k rows are returned; nothing is allocated.
    Weights of the minibatch default to 1.0.
    """
    names = list(draw.keys())
    if isinstance(fields, torch.Tensor):
        if len(names) != 1:
            raise ValueError(f"fields: expected a dict with keys {names}, got a tensor")
        fields = {names[0]: fields}
    if set(fields) != set(names):
        raise ValueError(f"fields: expected keys {names}, got {sorted(fields)}")
    b, k = int(labels.shape[0]), len(draw)
    w = torch.ones(b, dtype=torch.float32, device=labels.device) if weights is None else weights
    if out is None:
        device = labels.device
        cat = lambda a, d: torch.cat([a, d.to(device)])  # noqa: E731
        return Samples(
            {n: cat(fields[n], draw[n]) for n in names}, cat(labels, draw.labels), cat(w, draw.weights)
        )
    if len(out) < b + k:
        raise ValueError(f"out: expected room for {b + k} samples, got {len(out)}")
    view = out.narrow(b + k)
    for name in names:
        view[name][:b].copy_(fields[name], non_blocking=True)
        view[name][b:].copy_(draw[name], non_blocking=True)
    for dst, new, old in ((view.labels, labels, draw.labels), (view.weights, w, draw.weights)):
        dst[:b].copy_(new, non_blocking=True)
        dst[b:].copy_(old, non_blocking=True)
    return view


class RehearsalLoader:
    """Wraps a minibatch iterable so each step yields b new samples plus r' representatives.

    Args:
        loader: yields ``(x, y)`` or ``(x, y, w)``; x a tensor ``[b, ...]`` or, for
            multi-field samples, a dict ``{name: [b, ...]}``; y int64 ``[b]``; w float32 ``[b]``.
        dbuf: the distributed buffer; each minibatch's candidates go to ``dbuf.add``.
        representatives: r, samples drawn per step (at most ``dbuf.max_representatives``).
        offer: whether each minibatch's candidates go to ``dbuf.add`` (default True). Set
            ``loader.offer = False`` for passes over samples already offered (later epochs of
            a task), so the buffer does not keep the same sample twice.
        device: where the yielded tensors live. With CUDA the receive memory is pinned once
            (``dbuf.pin_memory()``) and copies run on a side stream that the current stream
            waits on, so the CPU does not block. Give it CPU minibatches (pinned ones copy
            asynchronously); CUDA minibatches work, but their candidates' copy to the host
            for ``dbuf.add`` waits for the GPU.

    Yields ``(x, y, w)``: x ``[b + r', ...]`` (a dict for multi-field samples), y ``[b + r']``,
    w ``[b + r']``. r' < r while the global buffer holds fewer than r samples (warm-up), and
    the first step has r' = 0 (nothing was requested before it). ``loader.drawn`` is the r'
    of the batch yielded last (e.g. to weigh the representatives' loss separately).

    Task boundaries: with a ``replay="past"`` buffer, call :meth:`end_task` after a task's
    last step; until then the steps replay earlier tasks only (none during the first task).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        dbuf: DistributedRehearsalBuffer,
        representatives: int = 7,
        device: str | torch.device = "cpu",
        offer: bool = True,
    ) -> None:
        if not isinstance(representatives, int) or not 0 <= representatives <= dbuf.max_representatives:
            raise ValueError(
                f"representatives: expected an int in [0, {dbuf.max_representatives}], got {representatives!r}"
            )
        if not isinstance(offer, bool):
            raise TypeError(f"offer: expected a bool, got {type(offer).__name__}")
        self.offer = offer
        self.loader = loader
        self.dbuf = dbuf
        self.representatives = representatives
        self.device = torch.device(device)
        self._stats = StepStats()
        self._cuda = _CudaStaging(dbuf, self.device) if self.device.type == "cuda" else None
        self.events: list[tuple[str, int, bool]] | None = None
        self.pending: DrawHandle | None = None  # the draw travelling during the current step
        self.drawn = 0  # r' of the batch yielded last: its final rows are the representatives

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def end_task(self) -> int:
        """Task boundary: ``dbuf.end_task()`` (call it between passes, not while iterating).
        With a ``replay="past"`` buffer the task's staged candidates become drawable;
        returns how many this rank offered to its buffer."""
        if self.pending is not None:
            raise RuntimeError("end_task: the loader is being iterated; call it after the task's last pass")
        return self.dbuf.end_task()

    def trace(self, enabled: bool = True) -> None:
        """Records (event, step, draw-arrived) tuples in ``self.events`` for inspection."""
        self.events = [] if enabled else None

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Per-step timings (mean/p50/p99 seconds) and counters; see README "Overhead"."""
        engine = self.dbuf.engine_stats()
        out = self._stats.summary(engine)
        if reset:
            self._stats.reset()
        return out

    def __iter__(self) -> Iterator[tuple[Fields, torch.Tensor, torch.Tensor]]:
        pending: DrawHandle | None = None
        step = 0
        try:
            for batch in self.loader:
                t0 = time.perf_counter()
                fields, labels, weights = _split(batch)
                # The draw requested below applies this insert (a small draw, on this
                # thread) or wakes the worker for it.
                if self.offer:
                    self.dbuf.add(
                        _to_cpu(fields),
                        labels.cpu(),
                        None if weights is None else weights.cpu(),
                        wake=self.representatives == 0,
                    )
                t1 = time.perf_counter()
                arrived = pending is None or pending.done()
                self._event("resume", step, arrived)
                draw = pending.wait() if pending is not None else None
                t2 = time.perf_counter()
                out = self._augment(fields, labels, weights, draw)
                if pending is not None and self._cuda is None:
                    pending.release()  # the rows were copied: the next draw may land there
                pending = self.pending = self.dbuf.get_remote_samples(self.representatives)
                self._event("request", step, False)
                t3 = time.perf_counter()
                self._stats.record(
                    add=t1 - t0, wait=t2 - t1, concat=t3 - t2, drawn=0 if draw is None else len(draw)
                )
                step += 1
                self.drawn = 0 if draw is None else len(draw)
                x: Fields = dict(out) if out.num_fields > 1 else next(iter(out.values()))
                yield x, out.labels, out.weights
        finally:
            self.pending = None
            if self._cuda is not None:
                self._cuda.drain()
            if pending is not None and self.dbuf._engine is not None:
                with contextlib.suppress(Exception):  # never mask the exception that got us here
                    pending.wait()  # leave nothing in flight: close() stays prompt

    def _augment(
        self, fields: Fields, labels: torch.Tensor, weights: torch.Tensor | None, draw: Samples | None
    ) -> Samples:
        if draw is None:
            draw = self.dbuf.schema.allocate(0, ranks=True)
        if self._cuda is not None:
            return self._cuda.augment(fields, labels, weights, draw)
        return concat_draw(fields, labels, weights, draw)

    def _event(self, name: str, step: int, arrived: bool) -> None:
        if self.events is not None:
            self.events.append((name, step, arrived))


class _CudaStaging:
    """Moves each augmented batch to the GPU on a side stream, from pinned receive memory.

    The default stream waits on an event, so the caller's kernels see complete tensors
    without the CPU blocking. A receive block is rewritten by the draw after next, so
    before that draw is requested the copy out of the block must be finished: ``augment``
    waits on the previous step's event (long done in a steady loop) rather than its own.
    """

    def __init__(self, dbuf: DistributedRehearsalBuffer, device: torch.device) -> None:
        dbuf.pin_memory()
        self.schema = dbuf.schema
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.previous: torch.cuda.Event | None = None

    def augment(
        self, fields: Fields, labels: torch.Tensor, weights: torch.Tensor | None, draw: Samples
    ) -> Samples:
        main = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            out = self.schema.allocate(int(labels.shape[0]) + len(draw), device=self.device)
            concat_draw(fields, labels, weights, draw, out=out)  # copies straight into place
            done = torch.cuda.Event()
            done.record(self.stream)
        main.wait_event(done)
        for t in [*out.values(), out.labels, out.weights]:
            t.record_stream(main)  # allocated on the side stream, used on the default one
        self.drain()
        self.previous = done
        return out

    def drain(self) -> None:
        """Blocks until the last recorded copy has read its receive block."""
        if self.previous is not None:
            self.previous.synchronize()
            self.previous = None


def _split(batch: Any) -> tuple[Fields, torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        weights = batch[2] if len(batch) == 3 else None
        return batch[0], batch[1], weights
    raise TypeError(f"loader: expected batches (x, y) or (x, y, w), got {type(batch).__name__}")


def _to_cpu(fields: Fields) -> Fields:
    if isinstance(fields, torch.Tensor):
        return fields.cpu().contiguous()
    return {n: t.cpu().contiguous() for n, t in fields.items()}
