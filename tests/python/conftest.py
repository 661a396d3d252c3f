"""Fixtures shared by the local-buffer tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def small_fields() -> dict:
    return {"x": ((3, 4), torch.float32), "y": ((2,), torch.int64)}
