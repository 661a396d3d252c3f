"""Makes ``import torchvision`` (and so ``import avalanche``) work beside the CPU torch.

Why :func:`prepare_torchvision` exists: Avalanche imports torchvision, and PyPI's
torchvision 0.28.0 wheel is a CUDA build whose compiled ops (``torchvision/_C.so``) need
``libc10_cuda.so``. Beside the CPU build of ``torch==2.13.0`` that library is absent, the ops
do not load, and ``import torchvision`` then fails in its fake-tensor registrations with
``RuntimeError: operator torchvision::nms does not exist`` (so ``import avalanche`` fails
too). Only then, :func:`prepare_torchvision` declares the two operator schemas that those
registrations look up (``torchvision::nms``, ``torchvision::qnms``) and imports torchvision
again. The declarations have no kernels: torchvision's ops (``nms``, ``roi_align``, ...)
still raise torchvision's own "Couldn't load custom C++ ops" error if called, and
everything Avalanche's classification strategies use (datasets, transforms, models) works.
With a torchvision whose ops load, it does nothing.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import Any

__all__ = ["prepare_torchvision"]

#: The operators that ``torchvision/_meta_registrations.py`` (0.28) registers fake kernels
#: for with ``torch.library.register_fake`` at import time, which needs them declared.
_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_MISSING_OPS = "torchvision::nms does not exist"
_library: Any = None  # the torch.library.Library that holds the schemas (kept alive)


def prepare_torchvision() -> bool:
    """Imports torchvision; when its compiled ops fail to load beside this torch (the error
    ``operator torchvision::nms does not exist``), declares their schemas and imports it
    again. Returns True when the schemas were declared. Any other import error propagates;
    without torchvision installed, does nothing (returns False)."""
    global _library
    if "torchvision" in sys.modules or find_spec("torchvision") is None:
        return False
    try:
        import torchvision
    except RuntimeError as error:
        if _MISSING_OPS not in str(error):
            raise
    else:
        return False
    import torch

    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _OP_SCHEMAS:
        _library.define(schema)
    import torchvision  # noqa: F401

    return True
