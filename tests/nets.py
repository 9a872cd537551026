"""Small models shared by several test files."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualNet"]


class ResidualNet(nn.Module):
    """conv a -> conv b with a skip around b -> linear: the smallest model whose channels a
    residual sum ties together (1x6x6 inputs, 3 classes)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.fc((h + self.b(h)).flatten(1))
