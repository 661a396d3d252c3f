"""Small models for the experiments; every model maps ``[n, *input_shape]`` float32 to
``[n, num_classes]`` logits (one head over all classes, as class-incremental learning needs).

* ``mlp``: flatten + 2 hidden layers, any input shape.
* ``cnn1d``: 1D CNN for ``[C, L]`` signals (MNIST-1D: ``[1, 40]``).
* ``cnn``: small 2D CNN for small images (digits: ``[1, 8, 8]``).
* ``lenet``: two conv + pool stages for 28x28 images (MNIST: ``[1, 28, 28]``).
* ``resnet``: a small ResNet (3 stages of basic blocks, widths 16/32/64) for ``[3, 32, 32]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .names import MODELS


class MLP(nn.Module):
    """Flatten -> Linear(hidden) -> ReLU -> Linear(hidden) -> ReLU -> Linear(num_classes)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, *input_shape]`` -> logits ``[n, num_classes]``."""
        return self.net(x)


class CNN1D(nn.Module):
    """Three 1D convolutions (stride 1, 2, 2) and a linear head, for ``[C, L]`` signals."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> None:
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"model: cnn1d needs inputs [C, L], got {input_shape}")
        c, length = input_shape
        self.features = nn.Sequential(
            nn.Conv1d(c, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        out_len = (((length - 1) // 2 + 1) - 1) // 2 + 1
        self.head = nn.Linear(width * out_len, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, C, L]`` -> logits ``[n, num_classes]``."""
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Conv(16) -> Conv(32) -> 2x2 max-pool -> Linear(64) -> Linear(num_classes)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model: cnn needs inputs [C, H, W], got {input_shape}")
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (h // 2) * (w // 2), 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, C, H, W]`` -> logits ``[n, num_classes]``."""
        return self.net(x)


class LeNet(nn.Module):
    """Conv(16, 5x5) -> pool -> Conv(32, 5x5) -> pool -> Linear(128) -> Linear(num_classes).

    Pooling twice keeps a 28x28 step cheap on a CPU (~4x fewer MACs than ``cnn`` at full
    resolution), which a 2-rank comparison of five strategies on two cores needs."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model: lenet needs inputs [C, H, W], got {input_shape}")
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (h // 4) * (w // 4), 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, C, H, W]`` -> logits ``[n, num_classes]``."""
        return self.net(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + batch norm, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, cin, H, W]`` -> ``[n, cout, H / stride, W / stride]``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet-8-like network for ``[3, 32, 32]`` images: stem + 3 stages (16/32/64) + pool + linear."""

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, int, int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"model: resnet needs inputs [C, H, W], got {input_shape}")
        c = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(c, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.stages = nn.Sequential(
            BasicBlock(widths[0], widths[0], 1),
            BasicBlock(widths[0], widths[1], 2),
            BasicBlock(widths[1], widths[2], 2),
        )
        self.head = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, 3, H, W]`` -> logits ``[n, num_classes]``."""
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1))


def default_model(dataset: str) -> str:
    """The model ``auto`` picks for ``dataset``."""
    return {"mnist1d": "cnn1d", "digits": "cnn", "mnist": "lenet"}.get(dataset, "resnet")


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, dataset: str = "") -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`; ``auto`` picks by dataset)."""
    if name == "auto":
        name = default_model(dataset)
    if name == "mlp":
        return MLP(input_shape, num_classes)
    if name == "cnn1d":
        return CNN1D(input_shape, num_classes)
    if name == "cnn":
        return SmallCNN(input_shape, num_classes)
    if name == "lenet":
        return LeNet(input_shape, num_classes)
    if name == "resnet":
        return SmallResNet(input_shape, num_classes)
    raise ValueError(f"model: unknown {name!r}; choose one of {', '.join(MODELS)}")
