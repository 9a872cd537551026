"""AlexNet in two sizes (docs/method.md §5).

* ``alexnet``: torchvision's layout (57,044,810 parameters for 3 channels, 10 classes) with the
  first convolution's input channels taken from the spec; meant for 224-pixel inputs.
* ``alexnet32``: the 32-pixel variant the paper's code used for CIFAR-10 / Fashion-MNIST
  (23,210,826 parameters on CIFAR-10). Dropout is an ``nn.Dropout`` module, so it is off in
  eval mode (the original applied it at evaluation too; docs/method.md §7, do not copy).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from ..data.spec import InputSpec
from ..errors import ConfigError

__all__ = ["AlexNet32", "build_alexnet", "build_alexnet32"]


def build_alexnet(spec: InputSpec) -> nn.Module:
    """Registry entry for ``alexnet`` (torchvision layout, random init)."""
    model = torchvision.models.alexnet(weights=None, num_classes=spec.num_classes)
    if spec.channels != 3:
        old = model.features[0]
        model.features[0] = nn.Conv2d(spec.channels, old.out_channels, old.kernel_size,
                                      old.stride, old.padding)
    return model


class AlexNet32(nn.Module):
    """conv 3x3/s2/p1 c->64, pool; conv 2x2/p1 64->192, pool; conv 3x3/p1 192->384->256->256, pool;
    dropout, fc flatten->4096, ReLU, dropout, fc 4096->4096, ReLU, fc 4096->classes."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(spec.channels, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        # The flatten width follows from the input size (1024 at 32 px); probe it once.
        with torch.no_grad():
            try:
                n_flat = self.features(torch.zeros(1, spec.channels, spec.size, spec.size)).numel()
            except RuntimeError as exc:
                raise ConfigError(
                    f"alexnet32 needs inputs of at least 16x16 pixels, got {spec.size}x{spec.size}; "
                    "use the default size or --model mlp"
                ) from exc
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(n_flat, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, spec.num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def build_alexnet32(spec: InputSpec) -> nn.Module:
    """Registry entry for ``alexnet32``."""
    return AlexNet32(spec)
