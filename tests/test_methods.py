import math

import pytest
import torch
import torch.nn.functional as F

from causalprune.config import Config
from causalprune.masks import apply_masks, combine, ones_masks, sparsity
from causalprune.methods import causal_decision, magnitude_decision, random_decision, schedule_counts
from causalprune.record.features import group_ids
from causalprune.record.recorder import Recorder


def _weights(model):
    return {"conv.weight": model.conv.weight.detach().clone(), "fc.weight": model.fc.weight.detach().clone()}


@pytest.mark.parametrize("frac,n_iter", [(0.1, 10), (0.275, 10), (0.3, 3), (0.5, 7)])
def test_magnitude_final_sparsity_within_one_weight(tiny_net, frac, n_iter):
    cfg = Config(mag_prune_frac=frac, n_iter=n_iter, method="magnitude")
    masks = ones_masks(tiny_net)
    total = sum(m.numel() for m in masks.values())
    g = torch.Generator().manual_seed(0)
    for it in range(1, n_iter + 1):
        new = combine(masks, magnitude_decision(_weights(tiny_net), masks, cfg, it, g))
        assert all(bool((new[k] <= masks[k]).all()) for k in masks)  # masks only shrink
        masks = new
    pruned = total - sum(int(m.sum()) for m in masks.values())
    assert abs(pruned - total * (1 - (1 - frac) ** n_iter)) <= 1


def test_magnitude_is_global_and_prunes_smallest(tiny_net):
    cfg = Config(mag_prune_frac=0.5, n_iter=1)
    w = _weights(tiny_net)
    masks = combine(ones_masks(tiny_net), magnitude_decision(w, ones_masks(tiny_net), cfg, 1, None))
    kept = torch.cat([w[k].abs().reshape(-1)[masks[k].reshape(-1).bool()] for k in w])
    gone = torch.cat([w[k].abs().reshape(-1)[~masks[k].reshape(-1).bool()] for k in w])
    assert kept.min() >= gone.max()
    assert abs(sparsity(masks) - 50) < 100 / sum(v.numel() for v in w.values()) + 1e-9


def test_random_same_schedule_different_choice(tiny_net):
    cfg = Config(mag_prune_frac=0.3, n_iter=1)
    w, m0 = _weights(tiny_net), ones_masks(tiny_net)
    r = random_decision(w, m0, cfg, 1, torch.Generator().manual_seed(1))
    mg = magnitude_decision(w, m0, cfg, 1, None)
    assert sum(int(v.sum()) for v in r.values()) == sum(int(v.sum()) for v in mg.values())
    assert any(not torch.equal(r[k], mg[k]) for k in r)


def test_target_sparsity_formula():
    assert schedule_counts(1000, 0.1, 10) == round(1000 * (1 - 0.9 ** 10))
    c = Config(target_sparsity=0.9, n_iter=4)
    assert math.isclose(1 - (1 - c.prune_fraction()) ** 4, 0.9)


def _record(model, steps=12, lr=0.05, momentum=0.0):
    masks = ones_masks(model)
    apply_masks(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    rec = Recorder(model, masks, lr=lr, max_steps=steps, dtype="fp32")
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.after_step(loss)
    return rec, masks


@pytest.mark.parametrize("granularity", ["weight", "filter", "channel", "layer"])
def test_causal_decision_shapes_and_groups(tiny_net, granularity):
    rec, masks = _record(tiny_net)
    cfg = Config(l1_coeff=1e-6, granularity=granularity, lr_prune=0.05)
    keep, gammas = causal_decision(rec, cfg, torch.Generator().manual_seed(0))
    assert {k: v.shape for k, v in keep.items()} == {k: v.shape for k, v in masks.items()}
    for k, m in keep.items():
        assert m.dtype == torch.uint8
        if granularity == "filter":  # all-or-nothing per output filter / row
            rows = m.reshape(m.shape[0], -1)
            assert bool(((rows.sum(1) == 0) | (rows.sum(1) == rows.shape[1])).all())
        if granularity == "layer":
            assert int(m.sum()) in (0, m.numel())


def test_causal_huge_penalty_prunes_everything_tiny_keeps(tiny_net):
    rec, _ = _record(tiny_net)
    keep_all, _ = causal_decision(rec, Config(l1_coeff=1e-30, lr_prune=0.05), torch.Generator().manual_seed(0))
    keep_none, _ = causal_decision(rec, Config(l1_coeff=1e3, lr_prune=0.05), torch.Generator().manual_seed(0))
    assert sum(int(v.sum()) for v in keep_none.values()) == 0
    assert sum(int(v.sum()) for v in keep_all.values()) > 0


def test_group_ids():
    shape = torch.Size([3, 2, 2, 2])
    idx = torch.arange(24)
    f, nf = group_ids(shape, idx, "filter")
    c, nc = group_ids(shape, idx, "channel")
    assert nf == 3 and torch.equal(f, idx // 8)
    assert nc == 2 and torch.equal(c, (idx // 4) % 2)
