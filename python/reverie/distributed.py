"""The distributed rehearsal buffer: every rank's buffer is part of one global buffer."""

from __future__ import annotations

import atexit
import os
import secrets
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reverie import _core, pinning
from reverie.bootstrap import Bootstrap
from reverie.buffer import check_buffer_args
from reverie.samples import Samples
from reverie.schema import FieldsArg, Schema

ENGINES = ("auto", "mpi", "thallium")


class DrawHandle:
    """A global draw in flight. ``wait`` returns its samples; they are views into receive
    memory that the draw after next reuses, so ``clone()`` what you keep longer. (Draws of
    the same size into the same receive block share the view tensors themselves.)"""

    def __init__(self, owner: DistributedRehearsalBuffer, ticket: int) -> None:
        self._owner = owner
        self.ticket = ticket
        self._result: Samples | None = None

    def done(self) -> bool:
        """Whether the samples have arrived (never blocks)."""
        return self._result is not None or self._owner._engine_or_raise().done(self.ticket)

    def wait(self, timeout: float | None = None) -> Samples:
        """Blocks until the draw completes; raises TimeoutError after ``timeout`` seconds
        (default: the buffer's timeout). Returns Samples with fields ``[k, *shape]``,
        ``labels [k]``, ``weights [k]`` and ``ranks [k]`` (owner of each sample), k <= r."""
        if self._result is None:
            engine = self._owner._engine_or_raise()
            limit = self._owner.timeout if timeout is None else timeout
            if not engine.wait(self.ticket, limit):
                raise TimeoutError(f"get_remote_samples: no result within {limit} s")
            self._result = self._owner._draw_samples(self.ticket, engine.rows(self.ticket))
        return self._result


class DistributedRehearsalBuffer:
    """A rehearsal buffer per rank, drawn from as one: each draw is uniform without
    replacement over the union of all ranks' buffers.

    Args are those of :class:`reverie.RehearsalBuffer` (rank i seeds ``seed + i``) plus:
        comm: bootstrap communicator: an mpi4py communicator, a torch.distributed group, or
            None for a single process.
        engine: "mpi", "thallium", or "auto" (thallium when built, else mpi).
        address: Thallium protocol, e.g. "na+sm", "ofi+tcp", "ofi+verbs", "ofi+cxi".
        max_representatives: the largest r; receive memory is allocated and registered once.
        timeout: seconds allowed for every remote operation and every blocking call.
        queue_depth: queued ``add`` calls before ``add`` waits (back-pressure).

    Planning uses the global sizes learnt from the previous draw's replies, so they are at
    most one draw stale; the first draw of a rank sees only its own buffer.
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
    ) -> None:
        check_buffer_args(capacity, num_classes, candidates, seed)
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        if not isinstance(max_representatives, int) or not 1 <= max_representatives <= 4096:
            raise ValueError(
                f"max_representatives: expected an int in [1, 4096], got {max_representatives!r}"
            )
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
        if not isinstance(queue_depth, int) or queue_depth < 1:
            raise ValueError(f"queue_depth: expected a positive int, got {queue_depth!r}")
        self.schema = Schema(fields)
        self.capacity, self.num_classes, self.candidates = capacity, num_classes, candidates
        self.max_representatives = max_representatives
        self.timeout = float(timeout)
        self.bootstrap = Bootstrap(comm)
        self.rank, self.world_size = self.bootstrap.rank, self.bootstrap.size
        self.seed = seed
        self._buffer = _core.LocalBuffer(self.schema.field_bytes, capacity, num_classes, 0, seed + self.rank)
        token = self.bootstrap.bcast(secrets.randbits(63) if self.rank == 0 else None)
        self.engine = _resolve_engine(engine, self.world_size)
        transport = self._make_transport(self.engine, address, token)
        self._token = token  # job token and transport: kept for the fault tests' hooks
        self._transport = transport
        self._engine: Any | None = _core.Engine(
            self._buffer,
            transport,
            max_representatives,
            candidates or 0,
            queue_depth,
            candidates or 256,
            self.timeout,
            seed + self.rank,
        )
        self._blocks = [self._wrap_block(i) for i in range(2)]
        self._views: dict[tuple[int, int], Samples] = {}
        self._pinned: list[int] = []
        _open_buffers.add(self)

    # -- construction helpers ---------------------------------------------------------
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

    def _block_samples(self, ticket: int) -> Samples:
        return self._blocks[ticket % 2]

    def _draw_samples(self, ticket: int, k: int) -> Samples:
        """The first k rows of the ticket's receive block, in a new Samples. The views are
        made once per block and k: slicing four tensors took ~5 us, half a small draw's
        transfer time."""
        key = (ticket % 2, k)
        views = self._views.get(key)
        if views is None:
            views = self._views[key] = self._block_samples(ticket).narrow(k)
        return Samples(views, views.labels, views.weights, views.ranks)

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
        """Host bytes of this rank's buffer (receive blocks and insert queue not included)."""
        return self._buffer.nbytes

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
        per step when a draw is requested right after, as ``RehearsalLoader`` does."""
        if not isinstance(wake, bool):
            raise TypeError(f"wake: expected a bool, got {type(wake).__name__}")
        ptrs, n, _alive = self.schema.batch_pointers(fields, labels, weights)
        self._engine_or_raise().add(ptrs, n, wake)

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
        limit = self.timeout if timeout is None else timeout
        if not self._engine_or_raise().flush(limit):
            raise TimeoutError(f"flush: pending adds not applied within {limit} s")

    def __len__(self) -> int:
        return self._buffer.size()

    def global_size(self) -> int:
        """Samples in all ranks' buffers, as last learnt (at most one draw stale)."""
        return int(sum(self._engine_or_raise().known_sizes()))

    def class_counts(self) -> dict[int, int]:
        """Stored samples per label on this rank."""
        return dict(self._buffer.class_counts())

    def excluded_peers(self) -> list[int]:
        """Ranks dropped from planning after they failed to answer in time."""
        return list(self._engine_or_raise().excluded_peers())

    def engine_stats(self) -> dict[str, float]:
        """Counters of the background engine: draws, rows and bytes moved, busy seconds."""
        return dict(self._engine_or_raise().stats())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Collective checkpoint: applies pending adds, waits for draws in flight, then writes
        ``path/manifest.json`` and one ``rank-<i>.pt`` per rank, atomically (see README)."""
        from reverie.checkpoint import save_distributed

        return save_distributed(self, path)

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
        constructor arguments (e.g. ``capacity``, ``max_representatives``)."""
        from reverie import checkpoint as ckpt

        directory, manifest = ckpt.read_manifest(path)
        config = {
            key: manifest[key]
            for key in ("capacity", "num_classes", "candidates", "seed", "max_representatives")
        }
        config["fields"] = ckpt.fields_from_manifest(manifest)
        config.update(overrides)
        dbuf = cls(**config, comm=comm, engine=engine, address=address, timeout=timeout)
        if manifest["world_size"] == dbuf.world_size:
            state = ckpt.load_rank_file(directory, dbuf.rank)
            ckpt.restore_local(dbuf.schema, dbuf._buffer, state)
            dbuf._engine_or_raise().restore(state["engine"])
        else:
            states = [ckpt.load_rank_file(directory, r) for r in range(manifest["world_size"])]
            share = ckpt.redistribute(
                states, dbuf.schema, dbuf.rank, dbuf.world_size, dbuf.capacity, dbuf.num_classes
            )
            policy = dbuf._buffer.state()
            policy["classes"] = share["classes"]
            ckpt.restore_local(dbuf.schema, dbuf._buffer, {"samples": share["samples"], "policy": policy})
        dbuf.bootstrap.allgather(None)
        return dbuf

    def close(self) -> None:
        """Collective: applies pending adds, finishes draws in flight, stops serving once
        every rank has closed. Returns within the timeout even if a peer died."""
        if self._engine is None:
            return
        engine, self._engine = self._engine, None
        _open_buffers.discard(self)
        closed = engine.close()
        if self._pinned:
            torch.cuda.synchronize()  # no copy may still read the blocks
            pinning.unpin(self._pinned)
        if not closed:
            warnings.warn("DistributedRehearsalBuffer.close: a peer did not close in time", RuntimeWarning, 2)

    def _abandon(self) -> None:
        """Non-collective shutdown at interpreter exit, before MPI is finalised."""
        if self._engine is not None:
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
    if world_size == 1:
        return "local"
    if engine == "auto":
        return "thallium" if _core.HAVE_THALLIUM else "mpi"
    if engine == "mpi" and not _core.HAVE_MPI:
        raise ValueError("engine='mpi': this build of Reverie has no MPI engine (rebuild with MPI installed)")
    if engine == "thallium" and not _core.HAVE_THALLIUM:
        raise ValueError(
            "engine='thallium': this build of Reverie has no Thallium engine "
            "(install mochi-thallium, e.g. with Spack, and rebuild with REVERIE_THALLIUM=ON)"
        )
    return engine


_open_buffers: weakref.WeakSet[DistributedRehearsalBuffer] = weakref.WeakSet()


@atexit.register
def _shutdown_open_buffers() -> None:
    # Registered after mpi4py's finaliser, so it runs before it: servers stop while MPI lives.
    for buf in list(_open_buffers):
        buf._abandon()
