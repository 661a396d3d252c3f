"""Page-locks host memory that the C++ core owns, so copies to the GPU run asynchronously.

Each receive block is one allocation whose columns sit 64-byte aligned side by side, so
columns share pages: the block is registered as one span (registering its columns one by
one would fail with "already registered" on the shared pages).
"""

from __future__ import annotations

import torch

from reverie.samples import Samples


def block_span(block: Samples) -> tuple[int, int]:
    """(address, bytes) of the memory that holds a block's fields, labels and weights."""
    tensors = [*block.values(), block.labels, block.weights]
    start = min(t.data_ptr() for t in tensors)
    end = max(t.data_ptr() + t.numel() * t.element_size() for t in tensors)
    return start, end - start


def pin(blocks: list[Samples]) -> list[int]:
    """Registers each block with CUDA (``cudaHostRegister``); returns the addresses to unpin."""
    cudart = torch.cuda.cudart()
    pinned: list[int] = []
    try:
        for block in blocks:
            address, nbytes = block_span(block)
            torch.cuda.check_error(cudart.cudaHostRegister(address, nbytes, 0))
            pinned.append(address)
    except Exception:
        unpin(pinned)
        raise
    return pinned


def unpin(addresses: list[int]) -> None:
    """Undoes :func:`pin` (``cudaHostUnregister``); the memory stays allocated."""
    cudart = torch.cuda.cudart()
    for address in addresses:
        torch.cuda.check_error(cudart.cudaHostUnregister(address))
    addresses.clear()
