import math

import pytest
import torch

from causalprune.config import Config
from causalprune.masks import apply_masks, combine, ones_masks
from causalprune.methods import causal_decision, magnitude_decision, random_decision, schedule_counts
from causalprune.record.features import group_ids
from causalprune.record.recorder import Recorder
from causalprune.solvers import FeatureBlock, LassoSchedule, solve_reference

from .conftest import train_tiny


def _weights(model):
    return {"conv.weight": model.conv.weight.detach().clone(), "fc.weight": model.fc.weight.detach().clone()}


def _n_live(masks):
    return sum(int(m.sum()) for m in masks.values())


def _smallest_live(weights, masks, n):
    """The mask after pruning the n live weights of smallest |w| over all layers together: a plain
    Python sort of (|w|, layer, index) over every live weight, independent of the code under test."""
    live = [(abs(float(weights[k].reshape(-1)[j])), k, j)
            for k, m in masks.items() for j in m.reshape(-1).nonzero().squeeze(1).tolist()]
    assert len({v for v, _, _ in live}) == len(live), "ties would make the expected choice ambiguous"
    out = {k: m.clone().reshape(-1) for k, m in masks.items()}
    for _, k, j in sorted(live)[:n]:
        out[k][j] = 0
    return {k: v.reshape(masks[k].shape) for k, v in out.items()}


def _train_between(model, masks, generator):
    """Stand-in for the N_prune SGD epochs between two decisions: every live weight moves, pruned
    weights stay at zero (apply_masks), so the ranking changes from one iteration to the next."""
    with torch.no_grad():
        for p in (model.conv.weight, model.fc.weight):
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    apply_masks(model, masks)


@pytest.mark.parametrize("frac,n_iter", [(0.1, 10), (0.275, 10), (0.3, 3), (0.5, 7)])
def test_magnitude_prunes_exactly_the_smallest_live_weights_on_schedule(tiny_net, frac, n_iter):
    cfg = Config(mag_prune_frac=frac, n_iter=n_iter, method="magnitude")
    masks = ones_masks(tiny_net)
    P = _n_live(masks)
    g = torch.Generator().manual_seed(0)
    for it in range(1, n_iter + 1):
        _train_between(tiny_net, masks, g)
        w = _weights(tiny_net)
        new = combine(masks, magnitude_decision(w, masks, cfg, it, None))
        target = round(P * (1 - (1 - frac) ** it))  # weights pruned in total after iteration it (§4)
        assert P - _n_live(new) == target, f"iteration {it}"
        assert all(bool((new[k] <= masks[k]).all()) for k in masks), "a pruned weight came back"
        want = _smallest_live(w, masks, target - (P - _n_live(masks)))
        assert all(torch.equal(new[k], want[k]) for k in masks), f"iteration {it}: not the smallest live |w|"
        masks = new
    assert abs((P - _n_live(masks)) - P * (1 - (1 - frac) ** n_iter)) <= 1


def test_magnitude_ranks_globally_not_per_layer(tiny_net):
    """Scale one layer down: a global ranking takes that layer's weights first, a per-layer one would not."""
    with torch.no_grad():
        tiny_net.conv.weight.mul_(1e-3)
    cfg = Config(mag_prune_frac=0.2, n_iter=1)
    w, m0 = _weights(tiny_net), ones_masks(tiny_net)
    new = combine(m0, magnitude_decision(w, m0, cfg, 1, None))
    assert torch.equal(new["conv.weight"], torch.zeros_like(new["conv.weight"]))  # 36 of the 46 pruned
    assert all(torch.equal(new[k], v) for k, v in _smallest_live(w, m0, round(0.2 * _n_live(m0))).items())


def test_random_same_schedule_seeded_draw_different_choice(tiny_net):
    cfg = Config(mag_prune_frac=0.3, n_iter=3)
    masks = ones_masks(tiny_net)
    P = _n_live(masks)
    g = torch.Generator().manual_seed(0)
    for it in range(1, 4):
        _train_between(tiny_net, masks, g)
        w = _weights(tiny_net)
        r = random_decision(w, masks, cfg, it, torch.Generator().manual_seed(10 + it))
        torch.rand(7)  # the global generator moves; the draw must depend on the one passed in only
        again = random_decision(w, masks, cfg, it, torch.Generator().manual_seed(10 + it))
        other = random_decision(w, masks, cfg, it, torch.Generator().manual_seed(99))
        assert all(torch.equal(r[k], again[k]) for k in r), "same seed, same draw"
        new, new_other = combine(masks, r), combine(masks, other)
        mag = combine(masks, magnitude_decision(w, masks, cfg, it, None))
        target = round(P * (1 - (1 - 0.3) ** it))
        assert P - _n_live(new) == P - _n_live(new_other) == P - _n_live(mag) == target, f"iteration {it}"
        assert all(bool((new[k] <= masks[k]).all()) for k in masks), "a pruned weight came back"
        assert any(not torch.equal(new[k], mag[k]) for k in new), "random chose exactly magnitude's weights"
        assert any(not torch.equal(new[k], new_other[k]) for k in new), "another seed, another draw"
        masks = new


def test_target_sparsity_formula():
    assert schedule_counts(1000, 0.1, 10) == round(1000 * (1 - 0.9 ** 10))
    c = Config(target_sparsity=0.9, n_iter=4)
    assert math.isclose(1 - (1 - c.prune_fraction()) ** 4, 0.9)


def _record(model, steps=12, lr=0.05, momentum=0.0):
    masks = ones_masks(model)
    apply_masks(model, masks)
    rec = Recorder(model, masks, lr=lr, max_steps=steps, dtype="fp32")
    train_tiny(model, [rec], steps=steps, lr=lr, momentum=momentum)
    return rec, masks


def test_causal_keeps_exactly_the_weights_with_nonzero_gamma(tiny_net):
    rec, _ = _record(tiny_net)
    cfg = Config(l1_coeff=1e-7, lr_prune=0.05)
    keep, gammas = causal_decision(rec, cfg, torch.Generator().manual_seed(3))
    # The same problem, built here from the recording: x = lr^2 (dtheta/lr)^2 of each layer's columns,
    # y_s = L_{s+1} - L_s (eq. 8), one Lasso per layer in model order from one generator (§2).
    L = rec.losses[: rec.steps]
    y = (L[1:] - L[:-1]).float()
    sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=cfg.lasso_epochs)
    g = torch.Generator().manual_seed(3)
    negative_kept = pruned = 0
    for slot in rec.slots:
        block = FeatureBlock(rec.deltas()[:, slot.start:slot.stop], kind="square", scale=0.05 ** 2)
        (ref,) = solve_reference([block], y, cfg.l1_coeff, schedule=sched, generator=g)
        k = slot.key
        assert torch.equal(gammas[k], ref.abs()), k
        assert torch.equal(keep[k].reshape(-1), (ref != 0).to(torch.uint8)), k
        assert torch.equal(keep[k], (gammas[k] != 0).to(torch.uint8).reshape(keep[k].shape)), k
        negative_kept += int((ref < 0).sum())
        pruned += int((ref == 0).sum())
    assert negative_kept > 0 and pruned > 0 and _n_live(keep) > 0, "a partly pruned net, kept gammas of both signs"


@pytest.mark.parametrize("granularity", ["weight", "filter", "channel", "layer"])
def test_causal_decision_shapes_and_groups(tiny_net, granularity):
    rec, masks = _record(tiny_net)
    cfg = Config(l1_coeff=1e-6, granularity=granularity, lr_prune=0.05)
    keep, gammas = causal_decision(rec, cfg, torch.Generator().manual_seed(0))
    assert {k: v.shape for k, v in keep.items()} == {k: v.shape for k, v in masks.items()}
    for k, m in keep.items():
        assert m.dtype == torch.uint8
        if granularity == "weight":
            assert torch.equal(m.reshape(-1), (gammas[k] != 0).to(torch.uint8))
        else:  # one gamma per group: a weight is kept iff its group's gamma is nonzero
            gid, n_groups = group_ids(m.shape, torch.arange(m.numel()), granularity)
            assert gammas[k].shape == (n_groups,)
            assert torch.equal(m.reshape(-1), (gammas[k] != 0)[gid].to(torch.uint8))
        if granularity == "filter":  # all-or-nothing per output filter / row
            rows = m.reshape(m.shape[0], -1)
            assert bool(((rows.sum(1) == 0) | (rows.sum(1) == rows.shape[1])).all())
        if granularity == "layer":
            assert int(m.sum()) in (0, m.numel())


def test_causal_huge_penalty_prunes_everything_tiny_keeps_everything(tiny_net):
    rec, masks = _record(tiny_net)
    keep_all, g_all = causal_decision(rec, Config(l1_coeff=1e-30, lr_prune=0.05), torch.Generator().manual_seed(0))
    keep_none, g_none = causal_decision(rec, Config(l1_coeff=1e3, lr_prune=0.05), torch.Generator().manual_seed(0))
    assert bool((rec.deltas() != 0).any(0).all()), "every weight moved, so every one has a nonzero feature"
    assert all(torch.equal(keep_all[k], torch.ones_like(masks[k])) for k in masks)
    assert all(bool((g_all[k] != 0).all()) for k in masks)
    assert all(torch.equal(keep_none[k], torch.zeros_like(masks[k])) for k in masks)
    assert all(bool((g_none[k] == 0).all()) for k in masks)


def test_group_ids():
    shape = torch.Size([3, 2, 2, 2])
    idx = torch.arange(24)
    f, nf = group_ids(shape, idx, "filter")
    c, nc = group_ids(shape, idx, "channel")
    assert nf == 3 and torch.equal(f, idx // 8)
    assert nc == 2 and torch.equal(c, (idx // 4) % 2)
