"""Shared fixtures: a tiny model, a quick protocol on real (bundled) data, a temporary run root."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("TQDM_DISABLE", "1")
# Tests use small models: one thread avoids OpenMP oversubscription when processes share 2 cores.
torch.set_num_threads(1)


class TinyNet(nn.Module):
    """conv -> linear; small enough for exact checks, with both prunable layer types."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def quick_cfg(tmp_path):
    """The `quick` preset on scikit-learn's digits with an MLP, writing under tmp_path."""
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    return config_from_dict(preset_values("quick"), Config()).replace(out=str(tmp_path / "runs"), device="cpu")
