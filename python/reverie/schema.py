"""Field specifications and the checks every tensor passes before it reaches the C++ core."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from reverie.samples import Samples

MAX_FIELDS = 16
FieldsArg = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass(frozen=True)
class FieldSpec:
    """One named per-sample tensor: its shape (without the batch dimension) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def row_bytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


class Schema:
    """The ordered fields of a sample, plus labels (int64) and weights (float32)."""

    def __init__(self, fields: FieldsArg) -> None:
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError("fields: expected a non-empty dict name -> (shape, dtype)")
        if len(fields) > MAX_FIELDS:
            raise ValueError(f"fields: expected at most {MAX_FIELDS} fields, got {len(fields)}")
        specs = []
        for name, spec in fields.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"fields: names must be non-empty strings, got {name!r}")
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise ValueError(f"fields[{name!r}]: expected (shape, dtype), got {spec!r}")
            shape, dtype = spec
            if isinstance(shape, int):
                shape = (shape,)
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(f"fields[{name!r}]: shape must be positive ints, got {shape!r}")
            if not isinstance(dtype, torch.dtype) or dtype.is_complex:
                raise TypeError(f"fields[{name!r}]: dtype must be a real torch.dtype, got {dtype!r}")
            spec = FieldSpec(name, tuple(shape), dtype)
            if spec.row_bytes > host_memory_bytes():
                raise ValueError(
                    f"fields[{name!r}]: shape {spec.shape} is {spec.row_bytes} bytes per sample, "
                    f"more than this machine's {host_memory_bytes()} bytes of memory"
                )
            specs.append(spec)
        self.fields: tuple[FieldSpec, ...] = tuple(specs)
        self._name_set = frozenset(f.name for f in specs)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def field_bytes(self) -> list[int]:
        return [f.row_bytes for f in self.fields]

    @property
    def sample_bytes(self) -> int:
        return sum(self.field_bytes) + 8 + 4

    def as_dict(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {f.name: (f.shape, f.dtype) for f in self.fields}

    def batch_pointers(
        self,
        fields: Mapping[str, torch.Tensor] | torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[list[int], int, list[torch.Tensor]]:
        """Validates a minibatch and returns (column pointers, batch size, tensors to keep alive)."""
        if isinstance(fields, torch.Tensor) and len(self.fields) == 1:
            fields = {self.fields[0].name: fields}
        if not isinstance(fields, Mapping):
            raise TypeError(f"fields: expected a dict with keys {self.names}, got {type(fields).__name__}")
        if set(fields) != set(self.names):
            raise ValueError(f"fields: expected keys {self.names}, got {sorted(fields)}")
        n = _check_vector("labels", labels, torch.int64)
        tensors = []
        for spec in self.fields:
            t = fields[spec.name]
            where = f"fields[{spec.name!r}]"
            _check_tensor(where, t, spec.dtype)
            if tuple(t.shape) != (n, *spec.shape):
                raise ValueError(
                    f"{where}: expected shape {(n, *spec.shape)} (batch of labels), got {tuple(t.shape)}"
                )
            tensors.append(t)
        tensors.append(labels)
        ptrs = [t.data_ptr() for t in tensors]
        if weights is None:
            ptrs.append(0)
        else:
            if _check_vector("weights", weights, torch.float32) != n:
                raise ValueError(f"weights: expected shape ({n},), got {tuple(weights.shape)}")
            if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
                raise ValueError("weights: expected finite values >= 0")
            tensors.append(weights)
            ptrs.append(weights.data_ptr())
        return ptrs, n, tensors

    def allocate(self, k: int, ranks: bool = False, device: torch.device | str = "cpu") -> Samples:
        """Empty tensors for k samples, e.g. for ``RehearsalBuffer.sample(r, out=...)`` (CPU)
        or ``concat_draw(..., out=...)`` (any device)."""
        empty = lambda shape, dtype: torch.empty(shape, dtype=dtype, device=device)  # noqa: E731
        fields = {f.name: empty((k, *f.shape), f.dtype) for f in self.fields}
        rank_t = empty(k, torch.int32) if ranks else None
        return Samples(fields, empty(k, torch.int64), empty(k, torch.float32), rank_t)

    def out_pointers(self, out: Samples, r: int) -> list[int]:
        """Validates caller-provided output tensors for r samples and returns their pointers."""
        if not isinstance(out, Samples):
            raise TypeError("out: expected Samples (see RehearsalBuffer.allocate)")
        if out.keys() != self._name_set:
            raise ValueError(f"out: expected fields {self.names}, got {sorted(out.keys())}")
        for spec in self.fields:
            t = out[spec.name]
            _check_tensor(f"out[{spec.name!r}]", t, spec.dtype)
            if t.shape[1:] != spec.shape or t.shape[0] < r:
                raise ValueError(
                    f"out[{spec.name!r}]: expected shape ({r}, *{spec.shape}), got {tuple(t.shape)}"
                )
        for name, t, dtype in (
            ("out.labels", out.labels, torch.int64),
            ("out.weights", out.weights, torch.float32),
        ):
            if _check_vector(name, t, dtype) < r:
                raise ValueError(f"{name}: expected at least {r} entries, got {t.shape[0]}")
        return [out[f.name].data_ptr() for f in self.fields] + [out.labels.data_ptr(), out.weights.data_ptr()]


def host_memory_bytes() -> int:
    """Physical memory of this machine: no buffer or sample may be larger."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _check_tensor(where: str, t: object, dtype: torch.dtype) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{where}: expected dtype {dtype}, got {t.dtype}")
    if not t.is_cpu:
        raise ValueError(f"{where}: expected a CPU tensor, got device {t.device} (call .cpu() first)")
    if not t.is_contiguous():
        raise ValueError(f"{where}: expected a contiguous tensor (call .contiguous() first)")


def _check_vector(where: str, t: object, dtype: torch.dtype) -> int:
    _check_tensor(where, t, dtype)
    assert isinstance(t, torch.Tensor)
    if t.dim() != 1:
        raise ValueError(f"{where}: expected a 1-D tensor, got shape {tuple(t.shape)}")
    return int(t.shape[0])
