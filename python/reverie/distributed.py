"""The distributed rehearsal buffer: every rank's buffer is part of one global buffer."""

from __future__ import annotations

import atexit
import os
import secrets
import sys
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reverie import _core, checkpoint, pinning
from reverie.bootstrap import Bootstrap, check_timeout
from reverie.buffer import check_buffer_args, make_core_buffer
from reverie.engines import ENGINES, resolve_engine
from reverie.samples import Samples
from reverie.schema import FieldsArg, Schema
from reverie.shm_cleanup import unlink_own_segments
from reverie.staging import Stage, check_draws, check_replay, stage_seed
from reverie.state import local_state, restore_local


class DrawHandle:
    """A global draw in flight. ``wait`` returns its samples; they are views into receive
    memory that the draw after next reuses (the next one, after :meth:`release`), so
    ``clone()`` what you keep longer. (Draws of the same size into the same receive block
    share the view tensors themselves.)"""

    def __init__(self, owner: DistributedRehearsalBuffer, ticket: int) -> None:
        self._owner = owner
        self.ticket = ticket
        self._result: Samples | None = None
        self._released = False

    def done(self) -> bool:
        """Whether the samples have arrived (never blocks)."""
        return self._result is not None or self._owner._engine_or_raise().done(self.ticket)

    def wait(self, timeout: float | None = None) -> Samples:
        """Blocks until the draw completes; raises TimeoutError after ``timeout`` seconds
        (default: the buffer's timeout). Returns Samples with fields ``[k, *shape]``,
        ``labels [k]``, ``weights [k]`` and ``ranks [k]`` (owner of each sample), k <= r."""
        if self._released:
            raise RuntimeError("wait: the draw was released; its rows may be overwritten")
        if self._result is None:
            engine = self._owner._engine_or_raise()
            limit = self._owner.timeout if timeout is None else check_timeout(timeout, allow_zero=True)
            if not engine.wait(self.ticket, limit):
                raise TimeoutError(f"get_remote_samples: no result within {limit} s")
            self._result = self._owner._draw_samples(self.ticket, engine.rows(self.ticket))
        return self._result

    def release(self) -> None:
        """Done with the samples (copied, e.g. by ``torch.cat``): the next draw may land in
        their receive memory, which the CPU caches still hold, instead of the other block.
        The samples' tensors must not be used afterwards. Call it after :meth:`wait`; it
        changes nothing once a later draw was requested. :class:`reverie.RehearsalLoader`
        does it on CPU. Large draws gain most: 28 x 602 KB over MPICH, 2 ranks, took 0.61-0.70
        of the raw exchange's bandwidth without it and 0.83-0.86 with it (2-core dev box)."""
        if self._released:
            return
        if self._result is None:
            raise RuntimeError("release: wait() for the draw first (its rows are still arriving)")
        self._owner._engine_or_raise().release(self.ticket)
        self._released = True
        self._result = None


class DistributedRehearsalBuffer:
    """A rehearsal buffer per rank, drawn from as one: each draw is uniform without
    replacement over the union of all ranks' buffers.

    Args are those of :class:`reverie.RehearsalBuffer` (rank i seeds ``seed + i``) plus:
        comm: bootstrap communicator: an mpi4py communicator, a torch.distributed group, or
            None for a single process.
        engine: "mpi", "thallium", or "auto" (thallium when built, else mpi).
        address: Thallium protocol, e.g. "na+sm", "ofi+tcp", "ofi+verbs", "ofi+cxi".
        max_representatives: the largest r; receive memory is allocated and registered once.
        timeout: seconds allowed for every remote operation and every blocking call,
            collectives of construction, save and load included (finite, at most 1e7).
        queue_depth: queued ``add`` calls before ``add`` waits (back-pressure).
        replay: ``"online"`` (default) or ``"past"``, as for :class:`reverie.RehearsalBuffer`:
            with ``"past"``, ``add`` stages this rank's candidates and :meth:`end_task`
            commits them, so every draw (on any rank) returns samples of finished tasks only.
        size_refresh: the most of this rank's draws a settled peer's size may be used without
            news of it (default 8; see below).
        draws: ``"independent"`` (default) or ``"passes"``, as for :class:`reverie.RehearsalBuffer`:
            with ``"passes"`` this rank's successive draws walk one random order of the union
            of all ranks' samples (a new pass whenever the global size it plans with changes).

    A draw sends requests only to the ranks its plan takes rows from. It plans with each
    peer's size as last heard: every request carries its sender's size and every reply its
    owner's, and a rank's first draw asks every peer first. A peer whose buffer is not full
    gets a size query with the next draw that takes none of its rows when it is growing (its
    size changed between two of this rank's draws; one draw old at most) or when this rank
    heard nothing from it for ``size_refresh`` draws (settled: ``size_refresh`` draws old at
    most). Full buffers never change size and are never asked again; :meth:`end_task` makes
    the next draw ask every peer. While the buffers fill, a draw may message every peer, as
    before; once they settle, about ``min(r, P - 1)``. ``engine_stats()`` counts
    ``requests_sent`` and ``size_messages``.

    Construction is collective: the ranks agree on the job token, the engine, the fields
    (names, shapes, dtypes), max_representatives and the wire version, and every rank
    raises ValueError naming what differs.
    """

    def __init__(
        self,
        capacity: int,
        fields: FieldsArg,
        num_classes: int | None = None,
        candidates: int | None = None,
        seed: int = 0,
        comm: Any = None,
        engine: str = "auto",
        address: str | None = None,
        max_representatives: int = 64,
        timeout: float = 30.0,
        queue_depth: int = 8,
        replay: str = "online",
        draws: str = "independent",
        size_refresh: int = 8,
    ) -> None:
        check_buffer_args(capacity, num_classes, candidates, seed)
        if (
            isinstance(size_refresh, bool)
            or not isinstance(size_refresh, int)
            or not 1 <= size_refresh <= 2**32 - 1
        ):
            raise ValueError(f"size_refresh: expected an int of at least 1 (draws), got {size_refresh!r}")
        check_replay(replay)
        check_draws(draws)
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        if not isinstance(max_representatives, int) or not 1 <= max_representatives <= 4096:
            raise ValueError(
                f"max_representatives: expected an int in [1, 4096], got {max_representatives!r}"
            )
        self.timeout = check_timeout(timeout)
        if not isinstance(queue_depth, int) or queue_depth < 1:
            raise ValueError(f"queue_depth: expected a positive int, got {queue_depth!r}")
        self.schema = Schema(fields)
        self.capacity, self.num_classes, self.candidates = capacity, num_classes, candidates
        self.max_representatives = max_representatives
        self.bootstrap = Bootstrap(comm, self.timeout)
        self.rank, self.world_size = self.bootstrap.rank, self.bootstrap.size
        self.seed = seed
        self.replay = replay
        self.draws = draws
        self.engine, token = self._agree_on_setup(engine)
        self._buffer = make_core_buffer(self.schema, capacity, num_classes, 0, seed + self.rank)
        self._stage: Stage | None = None
        engine_candidates = candidates or 0
        if replay == "past":  # candidates are chosen when staged; a commit offers every staged row
            own_seed = stage_seed((seed + self.rank) % 2**64)
            stage = make_core_buffer(self.schema, capacity, num_classes, candidates or 0, own_seed)
            self._stage = Stage(self.schema, stage, num_classes)
            engine_candidates = 0
        transport = self._make_transport(self.engine, address, token)
        self._token = token  # job token and transport: kept for the fault tests' hooks
        self._transport = transport
        self._engine: Any | None = _core.Engine(
            self._buffer,
            transport,
            max_representatives,
            engine_candidates,
            queue_depth,
            candidates or 256,
            self.timeout,
            seed + self.rank,
            draws == "passes",
            size_refresh,
        )
        self._blocks = [self._wrap_block(i) for i in range(2)]
        self._block_generations = [0, 0]
        self._views: dict[tuple[int, int], Samples] = {}
        self._pinned: list[int] = []
        _open_buffers.add(self)

    # -- construction helpers ---------------------------------------------------------
    def _agree_on_setup(self, engine: str) -> tuple[str, int]:
        """Collective: the engine each rank resolves and what must match on every rank for
        rows to travel intact; returns (engine, rank 0's job token)."""
        error, resolved = None, None
        try:
            resolved = _resolve_engine(engine, self.world_size)
        except ValueError as exc:
            error = exc
        mine = {
            "engine": resolved,
            "fields": ", ".join(
                f"{f.name} {f.shape} {str(f.dtype).removeprefix('torch.')}" for f in self.schema.fields
            ),
            "max_representatives": self.max_representatives,
            "replay": self.replay,
            "draws": self.draws,
            "wire": _core.WIRE_VERSION,
        }
        token = secrets.randbits(63) if self.rank == 0 else None
        everyone = self.bootstrap.allgather({**mine, "token": token, "error": error and str(error)}, "setup")
        if error is not None:
            raise error
        failed = [f"rank {r}: {d['error']}" for r, d in enumerate(everyone) if d["error"]]
        if failed:
            raise ValueError("engine: " + "; ".join(failed))
        for key, value in mine.items():
            differ = {r: d[key] for r, d in enumerate(everyone) if d[key] != value}
            if differ:
                raise ValueError(
                    f"{key}: the ranks disagree: rank {self.rank} has {value!r}, "
                    + ", ".join(f"rank {r} has {v!r}" for r, v in sorted(differ.items()))
                    + f" (every rank must build the buffer with the same {key})"
                )
        return str(resolved), int(everyone[0]["token"])

    def _make_transport(self, engine: str, address: str | None, token: int) -> Any:
        if engine == "local":
            return None
        if engine == "mpi":
            return _core.mpi_transport(
                self._buffer,
                self.bootstrap.mpi_fortran_handle(),
                token,
                self.max_representatives,
                self.timeout,
            )
        from reverie.thallium import make_thallium_transport

        return make_thallium_transport(self, address or "na+sm", token)

    def _wrap_block(self, which: int) -> Samples:
        arrays = self._engine_or_raise().block_arrays(which)
        r = self.max_representatives
        fields = {
            f.name: torch.from_numpy(a).view(f.dtype).view(r, *f.shape)
            for f, a in zip(self.schema.fields, arrays, strict=False)
        }
        labels = torch.from_numpy(arrays[-3]).view(torch.int64)
        weights = torch.from_numpy(arrays[-2]).view(torch.float32)
        return Samples(fields, labels, weights, torch.from_numpy(arrays[-1]))

    def _draw_samples(self, ticket: int, k: int) -> Samples:
        """The first k rows of the ticket's receive block, in a new Samples. The views are
        made once per block and k: slicing four tensors took ~5 us, half a small draw's
        transfer time."""
        which = self._engine_or_raise().block_of(ticket)
        self._follow_retired_block(which)
        key = (which, k)
        views = self._views.get(key)
        if views is None:
            views = self._views[key] = self._blocks[which].narrow(k)
        return Samples(views, views.labels, views.weights, views.ranks)

    def _follow_retired_block(self, which: int) -> None:
        """After a peer timed out the engine moves draws of this parity to a fresh block (the
        old one may still receive that peer's late rows): wrap the new one."""
        generation = self._engine_or_raise().block_generation(which)
        if generation == self._block_generations[which]:
            return
        self._blocks[which] = self._wrap_block(which)
        self._views = {key: v for key, v in self._views.items() if key[0] != which}
        self._block_generations[which] = generation
        if self._pinned:
            self._pinned += pinning.pin([self._blocks[which]])

    def _engine_or_raise(self) -> Any:
        if self._engine is None:
            raise RuntimeError("DistributedRehearsalBuffer: already closed")
        return self._engine

    # -- public API ---------------------------------------------------------------------
    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return self.schema.as_dict()

    @property
    def nbytes(self) -> int:
        """Host bytes of this rank's buffer, stage included (receive blocks and insert queue not)."""
        return self._buffer.nbytes + (0 if self._stage is None else self._stage.core.nbytes)

    @property
    def staged(self) -> int:
        """This rank's samples staged for the next :meth:`end_task` (0 with ``replay="online"``)."""
        return 0 if self._stage is None else len(self._stage)

    def receive_blocks(self) -> list[Samples]:
        """The two receive blocks (``[max_representatives, ...]`` each) that draws land in."""
        return list(self._blocks)

    def pin_memory(self) -> None:
        """Page-locks the receive blocks for CUDA (once; undone by ``close``), so draws copy
        to the GPU asynchronously. Raises RuntimeError without a CUDA device."""
        self._engine_or_raise()
        if not torch.cuda.is_available():
            raise RuntimeError("pin_memory: CUDA is not available")
        if not self._pinned:
            self._pinned = pinning.pin(self._blocks)

    @property
    def is_pinned(self) -> bool:
        """Whether :meth:`pin_memory` registered the receive blocks with CUDA."""
        return bool(self._pinned)

    def add(
        self,
        fields: Mapping[str, torch.Tensor] | torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
        *,
        wake: bool = True,
    ) -> None:
        """Offers a minibatch (``{name: [b, *shape]}``, labels int64 ``[b]``, weights float32
        ``[b]`` or None): the chosen candidates are copied and inserted in the background.
        Returns at once unless the insert queue is full (then waits, up to the timeout).

        ``wake=False`` leaves the insert to the background thread's next wake-up (the next
        ``get_remote_samples``, ``flush``, or a half-full queue): one thread hand-off less
        per step when a draw is requested right after, as ``RehearsalLoader`` does.

        With ``replay="past"`` the candidates are copied into this rank's stage here, on the
        calling thread, and no draw sees them before :meth:`end_task`."""
        if not isinstance(wake, bool):
            raise TypeError(f"wake: expected a bool, got {type(wake).__name__}")
        ptrs, n, _alive = self.schema.batch_pointers(fields, labels, weights)
        engine = self._engine_or_raise()
        if self._stage is None:
            engine.add(ptrs, n, wake)
            return
        error = self._buffer.check_labels(ptrs[len(self.schema.fields)], n)
        if error:
            raise ValueError(error)
        self._stage.add(ptrs, n)

    def end_task(self) -> int:
        """Task boundary on this rank (call it on every rank; not collective). With
        ``replay="past"``: offers every staged sample of this rank to its buffer (the
        class-balanced reservoir decides which stay), waits until they are applied, and
        empties the stage; returns how many were offered. With ``replay="online"`` it applies
        pending adds (as ``flush``) and returns 0. Either way this rank's next draw asks every
        peer its size and tells them its own: a peer knows the new sizes once both ranks have
        drawn after their boundary. TimeoutError after the buffer's timeout."""
        engine = self._engine_or_raise()
        if self._stage is None:
            self.flush()
            engine.refresh_sizes()
            return 0
        rows = self._stage.take()
        n = int(rows["labels"].shape[0])
        if n:
            ptrs, n, _alive = self.schema.batch_pointers(rows["fields"], rows["labels"], rows["weights"])
            engine.add(ptrs, n, True)
        self.flush()
        engine.refresh_sizes()
        return n

    def get_remote_samples(self, r: int) -> DrawHandle:
        """Starts a global draw of r samples (0 <= r <= max_representatives); never waits
        on the network. At most two draws are in flight; a third waits for the first."""
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= self.max_representatives:
            raise ValueError(
                f"r: expected an int in [0, max_representatives={self.max_representatives}], got {r!r}"
            )
        return DrawHandle(self, self._engine_or_raise().request(r))

    def flush(self, timeout: float | None = None) -> None:
        """Waits until this rank's pending adds are applied; TimeoutError after ``timeout`` s."""
        limit = self.timeout if timeout is None else check_timeout(timeout, allow_zero=True)
        if not self._engine_or_raise().flush(limit):
            raise TimeoutError(f"flush: pending adds not applied within {limit} s")

    def __len__(self) -> int:
        """This rank's samples that draws may return (``replay="past"``: committed ones)."""
        return self._buffer.size()

    def global_size(self) -> int:
        """Samples in all ranks' buffers, as this rank last heard them (see the class doc)."""
        return int(sum(self._engine_or_raise().known_sizes()))

    def class_counts(self) -> dict[int, int]:
        """Stored samples per label on this rank."""
        return dict(self._buffer.class_counts())

    def excluded_peers(self) -> list[int]:
        """Ranks dropped from planning after they failed to answer in time."""
        return list(self._engine_or_raise().excluded_peers())

    def engine_stats(self) -> dict[str, float]:
        """Counters of the background engine: draws, rows and bytes moved, busy seconds.

        ``fetch_s`` is the time spent in draws; of it, ``local_s`` copying this rank's own
        rows, ``answer_wait_s`` then waiting for the owners' answers and ``rows_wait_s`` for
        the rows that follow (MPI engine; 0 for Thallium, whose replies come in one step).
        docs/benchmarks.md ("Where a draw's time goes") reads them. ``reply_staging_bytes``
        is the memory this rank's server holds to stage packed replies (MPI engine; bounded
        by the replies open at once, not by the number of ranks: docs/scaling.md)."""
        return dict(self._engine_or_raise().stats())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Collective checkpoint: applies pending adds, waits for draws in flight, then writes
        ``path/manifest.json`` and one ``rank-<i>.pt`` per rank, atomically. An existing
        ``path`` that is not a checkpoint is refused (FileExistsError). A failure on any rank
        raises on every rank and keeps the previous checkpoint (docs/security.md)."""
        engine = self._engine_or_raise()

        def take_state() -> dict[str, Any]:
            stage = {} if self._stage is None else {"stage": self._stage.state()}
            return {"engine": engine.snapshot(), **local_state(self.schema, self._buffer), **stage}

        return checkpoint.save_distributed(self.bootstrap, path, self._config(), take_state)

    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "fields": {
                f.name: [list(f.shape), str(f.dtype).removeprefix("torch.")] for f in self.schema.fields
            },
            "num_classes": self.num_classes,
            "candidates": self.candidates,
            "seed": self.seed,
            "max_representatives": self.max_representatives,
            "replay": self.replay,
            "draws": self.draws,
        }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        comm: Any = None,
        engine: str = "auto",
        address: str | None = None,
        timeout: float = 30.0,
        **overrides: Any,
    ) -> DistributedRehearsalBuffer:
        """Collective restore of ``save(path)``. On the same number of ranks it is bit-exact
        (same seed and inputs give the same draws as an uninterrupted run); on a different
        number, every class is dealt evenly over the new ranks. ``overrides`` replace saved
        constructor arguments (``capacity``, ``max_representatives``, ...).

        Files are read with ``torch.load(weights_only=True)`` and every value is checked
        before anything changes; a checkpoint that fails on any rank raises on every rank
        (CheckpointError naming the file and field), after falling back to ``path.old``
        when a save was cut short mid-swap (docs/security.md)."""
        boot = Bootstrap(comm, check_timeout(timeout))
        _directory, manifest, states = checkpoint.read_checkpoint(boot, path, boot.size, boot.rank)
        checkpoint.check_overrides(overrides, states)
        config: dict[str, Any] = {key: manifest[key] for key in checkpoint.CONFIG_KEYS}
        config["replay"] = manifest.get("replay", "online")
        config["draws"] = manifest.get("draws", "independent")
        config["fields"] = checkpoint.fields_from_manifest(manifest)
        config.update(overrides)
        dbuf = cls(**config, comm=comm, engine=engine, address=address, timeout=timeout)
        try:
            dbuf.bootstrap.step(lambda: dbuf._restore(manifest, states), "load")
        except Exception:
            dbuf.close()
            raise
        return dbuf

    def _restore(self, manifest: dict[str, Any], states: list[dict[str, Any]]) -> None:
        if manifest["world_size"] == self.world_size:
            (state,) = states
            restore_local(self.schema, self._buffer, state, f"rank-{self.rank}.pt")
            if self._stage is not None:
                self._stage.restore(state["stage"], f"rank-{self.rank}.pt: stage")
            self._engine_or_raise().restore(state["engine"])
            return
        share = checkpoint.redistribute(
            states, self.schema, self.rank, self.world_size, self.capacity, self.num_classes
        )
        policy = self._buffer.state()
        policy["classes"] = share["classes"]
        restore_local(
            self.schema, self._buffer, {"samples": share["samples"], "policy": policy}, "redistributed"
        )
        if self._stage is not None:  # the staged rows are dealt over the new ranks the same way
            staged = [s["stage"] for s in states]
            share = checkpoint.redistribute(
                staged, self.schema, self.rank, self.world_size, self.capacity, self.num_classes
            )
            policy = self._stage.core.state()
            policy["classes"] = share["classes"]
            self._stage.restore({"samples": share["samples"], "policy": policy}, "redistributed stage")

    def close(self) -> None:
        """Collective: applies pending adds, finishes draws in flight, stops serving once
        every rank has closed. Returns within the timeout even if a peer died."""
        if self._engine is None:
            return
        engine, self._engine = self._engine, None
        _open_buffers.discard(self)
        _note_lost_peers(engine)
        closed = engine.close()
        if self._pinned:
            torch.cuda.synchronize()  # no copy may still read the blocks
            pinning.unpin(self._pinned)
        if not closed:  # that peer will not join MPI_Finalize either
            _unclosed.append(self.rank)
            warnings.warn("DistributedRehearsalBuffer.close: a peer did not close in time", RuntimeWarning, 2)

    def _abandon(self) -> None:
        """Non-collective shutdown at interpreter exit, before MPI is finalised."""
        if self._engine is not None:
            _note_lost_peers(self._engine)
            self._engine.abandon()
        self._engine = None

    def __enter__(self) -> DistributedRehearsalBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DistributedRehearsalBuffer(rank={self.rank}/{self.world_size}, engine={self.engine!r}, "
            f"size={len(self)}, capacity={self.capacity})"
        )


def _resolve_engine(engine: str, world_size: int) -> str:
    return resolve_engine(engine, world_size)


_open_buffers: weakref.WeakSet[DistributedRehearsalBuffer] = weakref.WeakSet()
_lost_peers: set[int] = set()  # peers that stopped answering, over every buffer of this process
# Closes of this process that a peer did not join in time: a rank that never drew from a
# peer after it died learns of it only there (seen in the kill test: a survivor that had
# drawn all it needed before the victim died then waited in MPI_Finalize).
_unclosed: list[int] = []


def _note_lost_peers(engine: Any) -> None:
    if engine.stats()["peers_timed_out"]:
        _lost_peers.update(engine.excluded_peers())


@atexit.register
def _shutdown_open_buffers() -> None:
    # Registered after mpi4py's finaliser, so it runs before it: servers stop while MPI lives.
    for buf in list(_open_buffers):
        buf._abandon()
    _leave_without_finalize_after_lost_peers()


def _leave_without_finalize_after_lost_peers() -> None:
    """A peer that died or stalled never joins MPI_Finalize, which then waits forever. After
    such a peer, the process ends here instead, without finalising MPI: with status 1 if
    the program ended with an uncaught exception, else 0 (docs/security.md)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if not (_lost_peers or _unclosed) or mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return
    status = 1 if getattr(sys, "last_value", None) is not None else 0
    who = f"peers {sorted(_lost_peers)} stopped answering" if _lost_peers else "a peer did not close in time"
    sys.stderr.write(
        f"reverie: {who} during this run; exiting with status {status} without MPI_Finalize, which would wait "
        "for them\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    unlink_own_segments()  # MPI_Finalize would have unlinked them
    os._exit(status)
