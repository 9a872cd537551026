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


def train_tiny(model, callbacks, *, steps: int = 12, lr: float = 0.05, momentum: float = 0.0, seed: int = 0,
               batch: int = 8) -> None:
    """``steps`` steps of plain SGD on seeded random 1x6x6 batches (3 classes), each loss handed to
    every callback's ``after_step`` right after the step, as train.train_epoch does."""
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(batch, 1, 6, 6, generator=g), torch.randint(0, 3, (batch,), generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for cb in callbacks:
            cb.after_step(loss)


@pytest.fixture
def recorded_tiny_net(tiny_net):
    """(tiny net, a fp32 Recorder of 12 SGD steps on it at lr 0.05, batches drawn from seed 5)."""
    from causalprune.masks import ones_masks
    from causalprune.record.recorder import Recorder

    rec = Recorder(tiny_net, ones_masks(tiny_net), lr=0.05, max_steps=12, dtype="fp32")
    train_tiny(tiny_net, [rec], seed=5)
    return tiny_net, rec


def without_keys(obj, keys):
    """``obj`` (nested dicts and lists, e.g. a summary.json) without the dict entries named in ``keys``,
    at any depth: what is left must repeat exactly between runs that should agree."""
    if isinstance(obj, dict):
        return {k: without_keys(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without_keys(v, keys) for v in obj]
    return obj
