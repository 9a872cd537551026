"""ResNets (docs/method.md §5).

* ``resnet18``: the CIFAR-style ResNet-18 (3x3 stride-1 stem, no max-pool, BasicBlocks
  [2, 2, 2, 2] of widths 64-512, 1x1 projection shortcuts, global average pool, fc), with
  BatchNorm and bias-free convolutions: 11,173,962 parameters on CIFAR-10.
* ``resnet18-nobn``: the same without BatchNorm and with a bias on every convolution, as in
  the paper's code: 11,169,162 parameters on CIFAR-10.
* ``resnet50``: torchvision's ResNet-50 with the stem's input channels from the spec.
"""

from __future__ import annotations

import torchvision
from torch import nn

from ..data.spec import InputSpec

__all__ = ["BasicBlock", "CifarResNet", "build_resnet18", "build_resnet18_nobn", "build_resnet50"]


def _conv(cin: int, cout: int, k: int, stride: int, bn: bool) -> nn.Conv2d:
    # With BatchNorm right after, a conv bias is redundant (BN's shift absorbs it).
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn)


def _norm(c: int, bn: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if bn else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, bn: bool) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, bn)
        self.bn1 = _norm(cout, bn)
        self.conv2 = _conv(cout, cout, 3, 1, bn)
        self.bn2 = _norm(cout, bn)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride, bn), _norm(cout, bn))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, spec: InputSpec, blocks: tuple[int, ...] = (2, 2, 2, 2), bn: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv(spec.channels, 64, 3, 1, bn)
        self.bn1 = _norm(64, bn)
        self.relu = nn.ReLU()
        layers, cin = [], 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(cin, width, stride if j == 0 else 1, bn))
                cin = width
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, spec.num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))


def build_resnet18(spec: InputSpec) -> nn.Module:
    """Registry entry for ``resnet18`` (with BatchNorm)."""
    return CifarResNet(spec, bn=True)


def build_resnet18_nobn(spec: InputSpec) -> nn.Module:
    """Registry entry for ``resnet18-nobn`` (the paper code's variant)."""
    return CifarResNet(spec, bn=False)


def build_resnet50(spec: InputSpec) -> nn.Module:
    """Registry entry for ``resnet50`` (torchvision's, random init)."""
    model = torchvision.models.resnet50(weights=None, num_classes=spec.num_classes)
    if spec.channels != 3:
        model.conv1 = nn.Conv2d(spec.channels, 64, 7, stride=2, padding=3, bias=False)
    return model
