"""The Lightning callback: records the chosen epochs, prunes with the Lasso, rewinds; only with Lightning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

L = pytest.importorskip("lightning")

from causalprune.errors import ConfigError  # noqa: E402
from causalprune.integrations.lightning import CausalPruning  # noqa: E402
from causalprune.masks import apply_masks, current_masks, ones_masks, sparsity  # noqa: E402
from causalprune.pruner import CausalPruner  # noqa: E402


def _data(n: int = 256):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


class Net(L.LightningModule):
    def __init__(self, optim: str = "sgd"):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.optim = optim

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        if self.optim == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Snapshots(L.Callback):
    """Parameters at the start of every epoch (after the pruning callback of the previous epoch)."""

    def __init__(self):
        self.at_start: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.at_start[trainer.current_epoch] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def _fit(callbacks, module=None, epochs: int = 3, **trainer_kw):
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = module or Net()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, **trainer_kw)
    trainer.fit(module, loader)
    return module, loader


def _manual_masks(module, loader, l1: float):
    """What CausalPruner gives on one epoch of the same SGD, written as a plain loop."""
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    pruner = CausalPruner(module, opt, l1_coeff=l1, record_dtype="fp32")
    for x, y in loader:
        loss = F.cross_entropy(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(loss)
    return pruner.compute_masks()


def test_prunes_at_the_chosen_epoch_like_a_plain_loop():
    l1 = 1e-9
    snaps = Snapshots()
    cb = CausalPruning(prune_at=[1], l1_coeff=l1, record_dtype="fp32")
    module, loader = _fit([cb, snaps])
    assert [h["epoch"] for h in cb.history] == [1] and cb.history[0]["steps"] == len(loader)
    masks = current_masks(module)
    assert 0 < sparsity(masks) < 100
    assert prune.is_pruned(module)
    assert all(torch.equal(masks[k], cb.history[0]["masks"][k]) for k in masks)
    for key, m in masks.items():  # pruned weights stay zero through the last epoch
        assert bool((module.get_submodule(key[: -len(".weight")]).weight.detach()[m == 0] == 0).all())
    # The same epoch of SGD in a plain loop, from the weights the callback started recording at.
    ref = Net()
    apply_masks(ref, ones_masks(ref))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(snaps.at_start[1][n])
    manual = _manual_masks(ref, loader, l1)
    assert all(torch.equal(manual[k], masks[k]) for k in masks)


def test_rewind_restores_survivors_to_the_start_of_recording():
    snaps = Snapshots()
    cb = CausalPruning(prune_at=[1], l1_coeff=1e-9, record_dtype="fp32", rewind=True)
    _fit([cb, snaps])
    before, after = snaps.at_start[1], snaps.at_start[2]  # epoch 2 starts right after the pruning
    for name, value in before.items():
        assert torch.equal(after[name], value), name  # weight_orig (masked in forward) and biases


def test_gradient_accumulation_records_optimizer_steps():
    cb = CausalPruning(prune_at=[0], l1_coeff=1e-9, record_dtype="fp32")
    _, loader = _fit([cb], epochs=1, accumulate_grad_batches=2)
    assert cb.history[0]["steps"] == len(loader) // 2


def test_needs_sgd_and_valid_settings():
    with pytest.raises(ConfigError, match="SGD"):
        _fit([CausalPruning(prune_at=[0])], module=Net("adam"), epochs=1)
    with pytest.raises(ConfigError, match="unknown setting"):
        CausalPruning(prune_at=[0], not_a_setting=1)
    with pytest.raises(ConfigError, match="apart"):
        CausalPruning(prune_at=[2, 3], record_epochs=2)
