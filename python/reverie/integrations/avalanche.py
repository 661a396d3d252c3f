"""Rehearsal from Reverie's distributed buffer inside Avalanche's training strategies.

:class:`ReveriePlugin` is an Avalanche ``SupervisedPlugin``: add it to any
``SupervisedTemplate`` (``Naive``, ``EWC``, ...) in place of ``ReplayPlugin``. Every step it
offers candidates from the new minibatch to this rank's part of a
:class:`reverie.DistributedRehearsalBuffer` and appends r representatives drawn uniformly
from the union of all ranks' buffers; the draw for the next step is requested as soon as
this step's minibatch is built, so it travels while the step trains (as
``reverie.RehearsalLoader`` does). Avalanche's experience boundaries are the buffer's task
boundaries: with ``replay="past"`` (the default) an experience's candidates become drawable
when it ends, so every step replays finished experiences only, as ``ReplayPlugin`` does.

Distributed runs: :func:`init_distributed` is Avalanche's
``DistributedHelper.init_distributed`` that also works under ``mpiexec``/``srun`` (it sets
the variables torchrun would). Wrap the model with ``DistributedHelper.wrap_model``:
Avalanche's strategies do not wrap it in DDP themselves. docs/avalanche.md has the recipe.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from reverie.integrations.torchvision_ops import prepare_torchvision

prepare_torchvision()  # before Avalanche imports torchvision (torchvision_ops: why)

from avalanche.core import SupervisedPlugin  # noqa: E402

from reverie.bootstrap import check_timeout  # noqa: E402
from reverie.distributed import DistributedRehearsalBuffer, DrawHandle  # noqa: E402
from reverie.engines import ENGINES  # noqa: E402
from reverie.samples import Samples  # noqa: E402
from reverie.staging import check_draws, check_replay  # noqa: E402

__all__ = ["ReveriePlugin", "init_distributed"]

#: Variables of MPI launchers that say this process is one of several ranks.
_MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


class ReveriePlugin(SupervisedPlugin, supports_distributed=True):
    """Experience replay from a distributed rehearsal buffer, for Avalanche strategies.

    Args (the knobs of ``reverie experiment``):
        buffer_size: samples kept over all ranks (split evenly: ``buffer_size // world``
            per rank), as Avalanche's ``mem_size``.
        representatives: r, samples drawn per step and rank and appended to the minibatch;
            None: the strategy's ``train_mb_size`` (as ``ReplayPlugin``'s ``batch_size_mem``).
        candidates: c, samples of each minibatch offered to the buffer; None: all of them.
        num_classes: fixed class quotas (``capacity // num_classes`` per class, labels in
            ``[0, num_classes)``); None: adaptive quotas over the classes seen so far.
        engine: "auto", "mpi" or "thallium" (one process: neither is used).
        replay: "past" (default): an experience's candidates are drawable from its end on,
            so steps replay finished experiences only; "online": from the next draw on.
        draws: "passes" (default): each rank's draws walk shuffled passes over the global
            buffer, as Avalanche's replay loader iterates its memory; "independent": every
            draw is a fresh uniform sample.
        seed: buffer seed (rank i uses ``seed + i``).
        comm: "auto" (default): ``MPI.COMM_WORLD`` under an MPI launcher, else the
            ``torch.distributed`` default group when initialised, else one process; or an
            mpi4py communicator, ``torch.distributed`` / a process group, or None.
        address: Thallium protocol (e.g. "na+sm", "ofi+tcp"); default "na+sm".
        timeout: seconds allowed for every remote operation and blocking wait.
        scratch_dir: folder for the buffer's files while a checkpoint is taken; every rank
            must see the same folder (default: the system temp folder, one host only).

    The buffer is built at the first training step (collectively: every rank trains), with
    fields ``x [*input_shape]`` of the minibatch's dtype and, when minibatches carry task
    labels, ``t [1]`` int64, so replayed rows keep their task label. Each replayed row
    weighs as much as a new one in the strategy's criterion; a step trains on ``b + r'``
    rows (``r' <= r``: fewer while the buffer holds fewer than r samples, none in the first
    experience with ``replay="past"``). ``drawn`` is the r' of the last step.

    Checkpoints: the plugin pickles with the strategy (Avalanche's ``save_checkpoint``),
    buffer contents included. Taking them is collective: call ``save_checkpoint`` on every
    rank (each its own file) between experiences; a rank that saves alone gets a
    TimeoutError after ``timeout`` seconds. A checkpoint restores on the same number of
    ranks; the buffer is rebuilt at the next training step.
    """

    def __init__(
        self,
        buffer_size: int = 200,
        representatives: int | None = None,
        candidates: int | None = None,
        num_classes: int | None = None,
        engine: str = "auto",
        replay: str = "past",
        draws: str = "passes",
        seed: int = 0,
        comm: Any = "auto",
        address: str | None = None,
        timeout: float = 60.0,
        scratch_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not _is_int(buffer_size) or buffer_size < 1:
            raise ValueError(f"buffer_size: expected a positive int, got {buffer_size!r}")
        if representatives is not None and (not _is_int(representatives) or not 0 <= representatives <= 4096):
            raise ValueError(
                f"representatives: expected None or an int in [0, 4096], got {representatives!r}"
            )
        if candidates is not None and (not _is_int(candidates) or candidates < 1):
            raise ValueError(f"candidates: expected None or a positive int, got {candidates!r}")
        if num_classes is not None and (not _is_int(num_classes) or not 1 <= num_classes <= buffer_size):
            raise ValueError(
                f"num_classes: expected None or an int in [1, buffer_size={buffer_size}], got {num_classes!r}"
            )
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        check_replay(replay)
        check_draws(draws)
        if not _is_int(seed) or not 0 <= seed < 2**63:
            raise ValueError(f"seed: expected an int in [0, 2**63), got {seed!r}")
        if isinstance(comm, str) and comm != "auto":
            raise ValueError(f"comm: expected 'auto', None or a communicator, got {comm!r}")
        self.buffer_size, self.representatives, self.candidates = buffer_size, representatives, candidates
        self.num_classes, self.engine, self.replay, self.draws = num_classes, engine, replay, draws
        self.seed, self.comm, self.address = seed, comm, address
        self.timeout = check_timeout(timeout)
        self.scratch_dir = None if scratch_dir is None else str(scratch_dir)
        self.buffer: DistributedRehearsalBuffer | None = None
        self.drawn = 0
        self._r = 0
        self._pending: DrawHandle | None = None
        self._saved: dict[str, Any] | None = None  # a checkpoint's buffer, restored at the next step

    # -- Avalanche callbacks ------------------------------------------------------------
    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        """Offers the new rows, then appends the draw requested last step to
        ``strategy.mbatch`` (``[x, y, t]``: ``x [b + r', ...]``, ``y [b + r']``,
        ``t [b + r']``) and requests the next step's draw."""
        mbatch = strategy.mbatch
        if not isinstance(mbatch, list) or len(mbatch) not in (2, 3):
            raise TypeError(
                f"strategy.mbatch: expected [x, y] or [x, y, task_labels], got {type(mbatch).__name__}"
                + (f" of {len(mbatch)}" if isinstance(mbatch, (list, tuple)) else "")
            )
        x, y = mbatch[0], mbatch[1]
        t = mbatch[2] if len(mbatch) == 3 else None
        if self.buffer is None:
            self._open(strategy, x, t)
        dbuf = self._buffer()
        if self.replay == "online" or strategy.clock.train_exp_epochs == 0:  # past: stage each row once
            fields = {"x": x.detach().cpu().contiguous()}
            if t is not None:
                fields["t"] = t.detach().cpu().to(torch.int64).view(-1, 1)
            dbuf.add(fields, y.detach().cpu().to(torch.int64), wake=self._r == 0)
        pending, self._pending = self._pending, None
        draw = pending.wait() if pending is not None else None
        self.drawn = 0 if draw is None else len(draw)
        if self.drawn:
            self._append(strategy, draw)  # type: ignore[arg-type]
        if pending is not None:
            pending.release()  # _append copied the rows: the next draw may land there
        if self._r:
            self._pending = dbuf.get_remote_samples(self._r)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Experience boundary: waits for the draw in flight, then ``end_task()`` (with
        ``replay="past"`` the experience's candidates become drawable)."""
        self._finish_draw()
        if self.buffer is not None:
            self.buffer.end_task()

    def after_training(self, strategy: Any, **kwargs: Any) -> None:
        self._finish_draw()

    # -- buffer ---------------------------------------------------------------------------
    def _open(self, strategy: Any, x: torch.Tensor, t: torch.Tensor | None) -> None:
        """Builds (or restores) the buffer: collective, at every rank's first step."""
        comm = _resolve_comm(self.comm)
        world = _world_size(comm)
        capacity = self.buffer_size // world
        if capacity < max(1, self.num_classes or 1):
            raise ValueError(
                f"buffer_size: {self.buffer_size} over {world} ranks leaves {capacity} slots per rank, "
                f"fewer than {max(1, self.num_classes or 1)}"
            )
        r = strategy.train_mb_size if self.representatives is None else self.representatives
        fields: dict[str, tuple[tuple[int, ...], torch.dtype]] = {"x": (tuple(x.shape[1:]), x.dtype)}
        if t is not None:
            fields["t"] = ((1,), torch.int64)
        kwargs: dict[str, Any] = {"comm": comm, "engine": self.engine, "address": self.address}
        kwargs["timeout"] = self.timeout
        if self._saved is not None:
            self.buffer = _restore(self._saved, world, kwargs)
            self._saved = None
        else:
            self.buffer = DistributedRehearsalBuffer(
                capacity=capacity,
                fields=fields,
                num_classes=self.num_classes,
                candidates=self.candidates,
                seed=self.seed,
                max_representatives=max(1, r),
                replay=self.replay,
                draws=self.draws,
                **kwargs,
            )
        if self.buffer.fields != fields:
            raise ValueError(
                f"strategy.mbatch: rows {fields} do not match the checkpoint's {self.buffer.fields}"
            )
        self._r = min(r, self.buffer.max_representatives)

    def _append(self, strategy: Any, draw: Samples) -> None:
        """Appends a draw's rows to the minibatch (copies: the draw's memory is reused)."""
        mbatch = strategy.mbatch
        device = mbatch[0].device
        mbatch[0] = torch.cat([mbatch[0], draw["x"].to(device)])
        mbatch[1] = torch.cat([mbatch[1], draw.labels.to(device, mbatch[1].dtype)])
        if len(mbatch) == 3:
            mbatch[2] = torch.cat([mbatch[2], draw["t"].view(-1).to(device, mbatch[2].dtype)])

    def _finish_draw(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.wait()

    def _buffer(self) -> DistributedRehearsalBuffer:
        if self.buffer is None:
            raise RuntimeError("ReveriePlugin: the buffer is not open (it opens at the first training step)")
        return self.buffer

    def close(self) -> None:
        """Collective: closes the buffer (every rank). Training again opens a new one."""
        self._finish_draw()
        if self.buffer is not None:
            buffer, self.buffer = self.buffer, None
            buffer.close()

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"buffer": state}``: this rank's buffer as ``{"manifest": str, "rank": int,
        "rank_file": bytes}`` (its files from ``DistributedRehearsalBuffer.save``), None
        before the first step. Collective when the buffer is open: every rank must call it."""
        if self.buffer is None:
            return {"buffer": self._saved}
        self._finish_draw()
        dbuf = self.buffer
        boot = dbuf.bootstrap
        scratch = (
            tempfile.mkdtemp(prefix="reverie-avalanche-", dir=self.scratch_dir) if boot.rank == 0 else None
        )
        folder = Path(boot.bcast(scratch, what="state_dict"))
        try:
            dbuf.save(folder / "buffer")
            files = folder / "buffer"
            state = {
                "manifest": (files / "manifest.json").read_text(),
                "rank": dbuf.rank,
                "rank_file": (files / f"rank-{dbuf.rank}.pt").read_bytes(),
            }
            boot.allgather(None, "state_dict")  # every rank has read its file
        finally:
            if boot.rank == 0:
                shutil.rmtree(folder, ignore_errors=True)
        return {"buffer": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` at the next training step (that step's ranks must be
        as many as the checkpoint's). Closes an open buffer first (collective then)."""
        if not isinstance(state, dict) or "buffer" not in state:
            raise ValueError("state: expected the dict of ReveriePlugin.state_dict()")
        self.close()
        self._saved = state["buffer"]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_saved"] = self.state_dict()["buffer"]
        state.update(buffer=None, _pending=None, drawn=0, _r=0, comm=_comm_token(self.comm))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["comm"] = _comm_from_token(state["comm"])
        self.__dict__.update(state)


def _restore(saved: dict[str, Any], world: int, kwargs: dict[str, Any]) -> DistributedRehearsalBuffer:
    """The buffer of a checkpoint (collective), from this rank's files in a private folder."""
    import json

    saved_world = json.loads(saved["manifest"])["world_size"]
    if saved_world != world:
        raise ValueError(
            f"checkpoint: its buffer was saved on {saved_world} ranks, this run has {world}; "
            "restore it on as many ranks"
        )
    folder = Path(tempfile.mkdtemp(prefix="reverie-avalanche-"))
    try:
        files = folder / "buffer"
        files.mkdir()
        (files / "manifest.json").write_text(saved["manifest"])
        (files / f"rank-{saved['rank']}.pt").write_bytes(saved["rank_file"])
        return DistributedRehearsalBuffer.load(files, **kwargs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- communicators --------------------------------------------------------------------------
def _mpi_launched() -> bool:
    """Whether an MPI launcher started this process as one of several ranks."""
    sizes = (os.environ.get(v, "") for v in _MPI_SIZE_VARIABLES)
    return any(s.isdigit() and int(s) > 1 for s in sizes)


def _mpi_world() -> Any:
    """``MPI.COMM_WORLD``, initialising MPI with thread level "multiple" if it is not yet."""
    if "mpi4py.MPI" not in sys.modules:
        import mpi4py

        mpi4py.rc.thread_level = "multiple"  # the MPI engine needs MPI_THREAD_MULTIPLE
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _resolve_comm(comm: Any) -> Any:
    """``comm="auto"``: MPI.COMM_WORLD under an MPI launcher, else torch.distributed's
    default group when initialised with more than one rank, else None (one process)."""
    if not (isinstance(comm, str) and comm == "auto"):
        return comm
    if _mpi_launched():
        return _mpi_world()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _world_size(comm: Any) -> int:
    if comm is None:
        return 1
    if type(comm).__module__.startswith("mpi4py"):
        return int(comm.Get_size())
    import torch.distributed as dist

    return int(dist.get_world_size(None if comm is dist else comm))


def _comm_token(comm: Any) -> Any:
    """What a checkpoint keeps of ``comm``: None, "auto", or which world communicator."""
    if comm is None or (isinstance(comm, str) and comm == "auto"):
        return comm
    import torch.distributed as dist

    if comm is dist:
        return "torch.distributed"
    if type(comm).__module__.startswith("mpi4py") and comm == _mpi_world():
        return "MPI.COMM_WORLD"
    raise ValueError(
        "comm: a checkpoint can keep comm='auto', None, MPI.COMM_WORLD or torch.distributed, "
        f"not {type(comm).__name__}; build the plugin with one of those to checkpoint it"
    )


def _comm_from_token(token: Any) -> Any:
    if token == "MPI.COMM_WORLD":
        return _mpi_world()
    if token == "torch.distributed":
        import torch.distributed as dist

        return dist
    return token


def init_distributed(random_seed: int = 0, use_cuda: bool = False, backend: str | None = None) -> bool:
    """Avalanche's ``DistributedHelper.init_distributed`` under torchrun *and* MPI launchers.

    Avalanche joins the ranks only when torchrun's variables are set (``LOCAL_RANK``, ...).
    Under ``mpiexec``/``srun`` with mpi4py, this sets them first: ``RANK``/``WORLD_SIZE`` from
    ``MPI.COMM_WORLD``, ``LOCAL_RANK`` from the host names, ``MASTER_ADDR``/``MASTER_PORT``
    from rank 0 (a free port, broadcast). Returns whether torch.distributed was initialised.
    """
    from avalanche.distributed import DistributedHelper

    if "LOCAL_RANK" not in os.environ and _mpi_launched():
        comm = _mpi_world()
        rank, size = comm.Get_rank(), comm.Get_size()
        host = socket.gethostname()
        hosts = comm.allgather(host)
        address = None
        if rank == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("", 0))
                port = s.getsockname()[1]
            address = ("127.0.0.1" if len(set(hosts)) == 1 else socket.gethostbyname(host), port)
        addr, port = comm.bcast(address, root=0)
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(size),
            LOCAL_RANK=str(hosts[:rank].count(host)),
            LOCAL_WORLD_SIZE=str(hosts.count(host)),
            MASTER_ADDR=addr,
            MASTER_PORT=str(port),
        )
    return bool(DistributedHelper.init_distributed(random_seed, backend=backend, use_cuda=use_cuda))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
