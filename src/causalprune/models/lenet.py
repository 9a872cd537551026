"""LeNet as used for the paper's tables (docs/method.md §5).

conv c->20 (k), 2x2 max-pool, conv 20->50 (k), 2x2 max-pool, fc flatten->500, fc 500->classes;
every layer has a bias, stride 1, no padding, ReLU. k = 5, except k = 7 on 64x64 inputs
(TinyImageNet). Counts: 657,080 on CIFAR-10, 431,080 on Fashion-MNIST, 3,177,710 on
TinyImageNet.
"""

from __future__ import annotations

from torch import nn

from ..data.spec import InputSpec
from ..errors import ConfigError

__all__ = ["LeNet", "build_lenet", "lenet_kernel", "lenet_min_size"]


def lenet_kernel(size: int) -> int:
    """Kernel size of both convolutions: 7 on 64-pixel inputs (TinyImageNet), else 5."""
    return 7 if size == 64 else 5


def _feature_side(size: int, k: int) -> int:
    # conv (no padding) shrinks by k-1, the 2x2 pool halves (floor); twice.
    side = (size - (k - 1)) // 2
    return (side - (k - 1)) // 2


def lenet_min_size() -> int:
    """Smallest square input whose feature map is at least 1x1 (16 px with k = 5)."""
    size = 1
    while _feature_side(size, lenet_kernel(size)) < 1:
        size += 1
    return size


class LeNet(nn.Module):
    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        k = lenet_kernel(spec.size)
        side = _feature_side(spec.size, k)
        if side < 1:
            raise ConfigError(
                f"lenet needs inputs of at least {lenet_min_size()}x{lenet_min_size()} pixels, got "
                f"{spec.size}x{spec.size}; use --model mlp for such small images"
            )
        self.conv1 = nn.Conv2d(spec.channels, 20, k)
        self.conv2 = nn.Conv2d(20, 50, k)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # docs/method.md §5: Kaiming-normal (fan_out, relu) on weights, zero biases.
        for m in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(x)


def build_lenet(spec: InputSpec) -> nn.Module:
    """Registry entry for ``lenet``."""
    return LeNet(spec)
