"""The bootstrap communicator: who we are, how many we are, and how to agree on small values.

Accepts an mpi4py communicator, a torch.distributed process group (or the
``torch.distributed`` module itself for the default group), or None for one process.

Every collective here ends within ``timeout`` seconds: a rank that died, stalled or never
reached the call turns into a ``TimeoutError`` on the others instead of a hang. Values
travel as JSON (never pickle), so a peer can send data but not code.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

MAX_TIMEOUT_S = 1e7  # the C++ core's limit too (bindings/seconds_arg.h)


def check_timeout(timeout: object, name: str = "timeout", allow_zero: bool = False) -> float:
    """``timeout`` as float seconds; ValueError naming ``name`` unless finite, > 0 (>= 0 with
    ``allow_zero``) and <= 1e7. There is no "wait forever": every blocking wait ends."""
    ok = isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and math.isfinite(timeout)
    low_ok = ok and (timeout >= 0 if allow_zero else timeout > 0)  # type: ignore[operator]
    if not low_ok or timeout > MAX_TIMEOUT_S:  # type: ignore[operator]
        bound = "[0, 1e7]" if allow_zero else "(0, 1e7]"
        raise ValueError(f"{name}: expected finite seconds in {bound}, got {timeout!r}")
    return float(timeout)  # type: ignore[arg-type]


class PeerFailed(RuntimeError):
    """Raised on every rank when a collective step failed on at least one of them."""


class Bootstrap:
    """Collective helpers over whichever communicator the job already has."""

    def __init__(self, comm: Any = None, timeout: float = 30.0) -> None:
        self.comm = comm
        self.kind = _kind_of(comm)
        self.timeout = check_timeout(timeout)
        self._stuck: list[Any] = []  # requests of collectives that timed out (never freed early)
        if self.kind == "mpi":
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
        elif self.kind == "torch":
            import torch.distributed as dist

            self._group = None if comm is dist else comm
            self.rank, self.size = dist.get_rank(self._group), dist.get_world_size(self._group)
        else:
            self.rank, self.size = 0, 1
            launched = launched_ranks()
            if launched is not None:
                warnings.warn(
                    f"comm=None: this process gets a buffer of its own, but it is one of {launched[1]} "
                    f"ranks launched together ({launched[0]}); pass comm=MPI.COMM_WORLD (mpi4py) or "
                    "comm=torch.distributed to share one buffer over the job",
                    stacklevel=3,
                )

    def allgather(self, value: Any, what: str = "allgather") -> list[Any]:
        """Every rank's JSON-serialisable ``value``, by rank; TimeoutError after ``timeout``."""
        if self.size == 1:
            return [json.loads(json.dumps(value))]
        data = json.dumps(value).encode()
        blobs = self._allgather_bytes(data, what)
        return [json.loads(b) for b in blobs]

    def bcast(self, value: Any, root: int = 0, what: str = "bcast") -> Any:
        return self.allgather(value if self.rank == root else None, what)[root]

    def agree(self, error: Exception | None, what: str) -> None:
        """Collective: when any rank passes an error, every rank raises: that rank its own
        error, the others PeerFailed naming the ranks that failed and why."""
        errors = self.allgather(None if error is None else f"{type(error).__name__}: {error}", what)
        if error is not None:
            raise error
        failed = [f"rank {r}: {e}" for r, e in enumerate(errors) if e is not None]
        if failed:
            raise PeerFailed(f"{what} failed on {len(failed)} of {self.size} ranks: " + "; ".join(failed))

    def step(self, work: Callable[[], object], what: str) -> None:
        """Collective: runs ``work`` on every rank, then :meth:`agree` on its outcome."""
        try:
            work()
        except Exception as exc:  # handed to agree, which re-raises it on this rank
            self.agree(exc, what)
        else:
            self.agree(None, what)

    def mpi_fortran_handle(self) -> int:
        """The communicator as MPI_Fint, for the C++ MPI engine (MPI_Comm_f2c)."""
        if self.kind != "mpi":
            raise ValueError(
                "engine='mpi': comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD); "
                "with a torch.distributed group use engine='thallium'"
            )
        return int(self.comm.py2f())

    # -- transports of the collectives ----------------------------------------------------
    def _allgather_bytes(self, data: bytes, what: str) -> list[bytes]:
        if self.kind == "mpi":
            return self._mpi_allgather(data, what)
        return self._torch_allgather(data, what)

    def _mpi_allgather(self, data: bytes, what: str) -> list[bytes]:
        import numpy as np
        from mpi4py import MPI

        deadline = time.monotonic() + self.timeout
        sizes = np.zeros(self.size, dtype=np.int64)
        mine = np.array([len(data)], dtype=np.int64)
        self._wait(self.comm.Iallgather(mine, sizes), deadline, what)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        send = np.frombuffer(data, dtype=np.uint8) if data else np.empty(0, dtype=np.uint8)
        request = self.comm.Iallgatherv(send, [out, sizes, offsets, MPI.BYTE])
        self._wait(request, deadline, what)
        return [out[o : o + n].tobytes() for o, n in zip(offsets.tolist(), sizes.tolist(), strict=True)]

    def _torch_allgather(self, data: bytes, what: str) -> list[bytes]:
        import torch
        import torch.distributed as dist

        device = torch.device("cpu")
        if dist.get_backend(self._group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        deadline = time.monotonic() + self.timeout
        size = torch.tensor([len(data)], dtype=torch.int64, device=device)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        self._wait(dist.all_gather(sizes, size, group=self._group, async_op=True), deadline, what)
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(longest, dtype=torch.uint8)
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else mine[:0]
        mine = mine.to(device)
        blobs = [torch.empty_like(mine) for _ in range(self.size)]
        self._wait(dist.all_gather(blobs, mine, group=self._group, async_op=True), deadline, what)
        return [bytes(b[: int(s.item())].cpu().numpy()) for b, s in zip(blobs, sizes, strict=True)]

    def _wait(self, request: Any, deadline: float, what: str) -> None:
        """Polls a non-blocking collective until it completes or the deadline passes. Sleeps
        grow from 20 us to 5 ms: an idle wait costs little CPU and a quick one little latency."""
        done: Callable[[], bool] = request.Test if self.kind == "mpi" else request.is_completed
        pause = 20e-6
        while not done():
            if time.monotonic() > deadline:
                self._stuck.append(request)
                raise TimeoutError(
                    f"{what}: rank {self.rank} waited {self.timeout:g} s for the other ranks "
                    "(one failed, stalled or did not reach this call)"
                )
            time.sleep(pause)
            pause = min(pause * 2, 5e-3)
        if self.kind == "torch":
            request.wait()  # raises the backend's error, if any


#: Variables a launcher sets to the number of ranks it started: MPICH/Intel MPI (Hydra),
#: Open MPI, srun (its step, not the allocation), torchrun.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "WORLD_SIZE")


def launched_ranks() -> tuple[str, int] | None:
    """(variable, ranks) when a launcher says it started more than one rank, else None."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return f"{name}={value}", int(value)
    return None


def _kind_of(comm: Any) -> str:
    if comm is None:
        return "none"
    mod = type(comm).__module__
    if mod.startswith("mpi4py"):
        return "mpi"
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch always has it on supported builds
        dist = None
    if dist is not None and (comm is dist or isinstance(comm, dist.ProcessGroup)):
        return "torch"
    raise TypeError(
        f"comm: expected an mpi4py communicator, a torch.distributed process group or None, "
        f"got {type(comm).__name__}"
    )
