"""The Thallium engine's setup: start this rank's engine, exchange addresses, connect.

Protocols (``address``): ``"na+sm"`` (shared memory, one node), ``"ofi+tcp"`` (on a
single box use ``"ofi+tcp://127.0.0.1"``: plain ``"ofi+tcp"`` listens on the first
non-loopback interface), ``"ofi+verbs"``, ``"ofi+cxi"``, ``"ucx+..."``. The deprecated
``"ofi+sockets"`` provider hangs in bulk transfers; use ``"ofi+tcp"``.
"""

from __future__ import annotations

from typing import Any

from reverie import _core


def make_thallium_transport(dbuf: Any, address: str, token: int) -> Any:
    """Collective over ``dbuf.bootstrap``: returns this rank's connected Thallium transport
    (a ``_core.Transport``) serving ``dbuf``'s local buffer. If any rank fails to start or
    connect, every rank raises RuntimeError (no rank is left waiting for the others)."""
    if not isinstance(address, str) or not address:
        raise ValueError(f"address: expected a protocol such as 'na+sm' or 'ofi+tcp', got {address!r}")
    boot = dbuf.bootstrap
    transport, error = None, None
    try:
        transport = _core.thallium_transport(
            dbuf._buffer,
            address,
            token,
            dbuf.max_representatives,
            dbuf.timeout,
            boot.rank,
            boot.size,
        )
        mine = transport.self_address
    except (RuntimeError, ValueError) as exc:
        mine, error = None, f"rank {boot.rank}: {exc}"
    addresses = boot.allgather(mine if error is None else {"error": error})
    _raise_if_failed(transport, addresses)
    try:
        transport.connect(addresses)
    except (RuntimeError, ValueError) as exc:
        error = f"rank {boot.rank}: {exc}"
    _raise_if_failed(transport, boot.allgather(error is None or {"error": error}))
    return transport


def _raise_if_failed(transport: Any, results: list[Any]) -> None:
    errors = [r["error"] for r in results if isinstance(r, dict)]
    if not errors:
        return
    if transport is not None:
        transport.abandon()  # not collective: stops serving and finalizes at once
    raise RuntimeError("engine='thallium': setup failed: " + "; ".join(errors))
