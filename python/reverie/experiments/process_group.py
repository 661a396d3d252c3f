"""Join the ranks of a launch (mpiexec, srun or none) into one torch.distributed group.

Rank and world size come from mpi4py when it is importable (it is the same MPI job the
rehearsal buffer uses), else from the launcher's environment (``OMPI_COMM_WORLD_RANK``,
``PMI_RANK``, ``SLURM_PROCID`` and their ``*_SIZE`` / ``SLURM_NTASKS`` partners). Rank 0 picks
a free TCP port and broadcasts it (and its address when the ranks span several hosts) with
mpi4py; without mpi4py, ``MASTER_ADDR`` / ``MASTER_PORT`` must already be set.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

_RANK_VARS = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
    ("PMIX_RANK", "PMIX_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
)


def launcher_rank_and_size(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(rank, world_size)`` set by a launcher in ``env`` (default ``os.environ``), or None."""
    env = dict(os.environ) if env is None else env
    for rank_var, size_var in _RANK_VARS:
        if rank_var in env and size_var in env:
            return int(env[rank_var]), int(env[size_var])
    return None


def inside_launch(env: dict[str, str] | None = None) -> bool:
    """True when this process is one of several ranks started by a launcher."""
    rs = launcher_rank_and_size(env)
    return rs is not None and rs[1] > 1


def free_port() -> int:
    """A TCP port that was free on this host a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcessGroup:
    """This rank's place in the job.

    Attributes:
        rank: 0-based rank.
        world_size: number of ranks.
        device: torch device this rank trains on (``cuda:<local rank>`` or ``cpu``).
        comm: the mpi4py communicator (``MPI.COMM_WORLD``) or None without mpi4py.
    """

    rank: int
    world_size: int
    device: torch.device
    comm: Any

    def barrier(self) -> None:
        """Block until every rank arrives (torch.distributed barrier)."""
        if dist.is_initialized():
            dist.barrier()

    def close(self) -> None:
        """Leave the torch.distributed group."""
        if dist.is_initialized():
            dist.destroy_process_group()


def _mpi_comm() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def init_process_group(device: str = "auto", timeout_s: float = 300.0) -> ProcessGroup:
    """Initialize torch.distributed (gloo on CPU, nccl on CUDA) for this launch.

    With more ranks on a host than GPUs, the ranks share GPUs round-robin and use gloo
    (NCCL needs one GPU per rank).

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        timeout_s: torch.distributed collective timeout, seconds.
    Returns:
        the :class:`ProcessGroup`; a single-rank group when not launched.
    """
    comm = _mpi_comm()
    if comm is not None:
        rank, world = comm.Get_rank(), comm.Get_size()
    else:
        rank, world = launcher_rank_and_size() or (0, 1)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available")
    if comm is not None:
        host = socket.gethostname()
        hosts = comm.allgather(host)
        local_rank, local_size = hosts[:rank].count(host), hosts.count(host)
        addr_port = None
        if rank == 0:
            addr = "127.0.0.1" if len(set(hosts)) == 1 else socket.gethostbyname(host)
            addr_port = (addr, free_port())
        addr, port = comm.bcast(addr_port, root=0)
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)
    else:
        local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
        per_node = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", "1"))
        local_size = int(per_node) if per_node.isdigit() else 1  # slurm may say "2(x3)"
        if world == 1:
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
        elif "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise RuntimeError(
                "without mpi4py, MASTER_ADDR and MASTER_PORT must be set for a multi-rank launch"
            )
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    # NCCL refuses two ranks on one GPU; gloo reduces CUDA tensors too (through the host).
    shared_gpu = use_cuda and local_size > torch.cuda.device_count()
    backend = "nccl" if use_cuda and not shared_gpu else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return ProcessGroup(rank, world, dev, comm)


def end_rank(status: int) -> NoReturn:
    """Ends this rank's process with ``status`` after its exit handlers ran (Reverie's buffers)
    and ``MPI_Finalize`` (mpi4py's own runs in that teardown; a rank ending without it makes
    mpiexec stop the others), without the interpreter's teardown.

    A torch.distributed (gloo) worker thread may still be releasing a finished collective
    whose tensor has a Python object, which needs the GIL; a thread that asks for the GIL
    while Python finalizes is ended by unwinding through C++ frames that may not throw, and
    the rank aborts (``terminate called without an active exception``, exit status 6) after
    its work is done. Seen at the end of a 2-rank experiment, about 1 run in 30 with the
    cores busy; tests/experiments/test_process_group.py reproduces it with a worker thread
    held in Python.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
