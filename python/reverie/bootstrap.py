"""The bootstrap communicator: who we are, how many we are, and how to agree on small values.

Accepts an mpi4py communicator, a torch.distributed process group (or the
``torch.distributed`` module itself for the default group), or None for one process.
"""

from __future__ import annotations

from typing import Any


class Bootstrap:
    """Collective helpers over whichever communicator the job already has."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.kind = _kind_of(comm)
        if self.kind == "mpi":
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
        elif self.kind == "torch":
            import torch.distributed as dist

            self._group = None if comm is dist else comm
            self.rank, self.size = dist.get_rank(self._group), dist.get_world_size(self._group)
        else:
            self.rank, self.size = 0, 1

    def bcast(self, value: Any, root: int = 0) -> Any:
        if self.kind == "mpi":
            return self.comm.bcast(value, root=root)
        if self.kind == "torch":
            import torch.distributed as dist

            box = [value]
            dist.broadcast_object_list(box, src=root, group=self._group)
            return box[0]
        return value

    def allgather(self, value: Any) -> list[Any]:
        if self.kind == "mpi":
            return self.comm.allgather(value)
        if self.kind == "torch":
            import torch.distributed as dist

            out: list[Any | None] = [None] * self.size
            dist.all_gather_object(out, value, group=self._group)
            return out
        return [value]

    def mpi_fortran_handle(self) -> int:
        """The communicator as MPI_Fint, for the C++ MPI engine (MPI_Comm_f2c)."""
        if self.kind != "mpi":
            raise ValueError(
                "engine='mpi': comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD); "
                "with a torch.distributed group use engine='thallium'"
            )
        return int(self.comm.py2f())


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
