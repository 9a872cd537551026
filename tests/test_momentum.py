"""The momentum model of Appendix A (eqs. 16-19): feature alignment on a hand-made sequence,
eq. 19's keep rule, group sums, and an end-to-end run with --momentum on digits."""

import pytest
import torch
from torch import nn

from causalprune.config import Config
from causalprune.experiment import Experiment
from causalprune.masks import apply_masks, ones_masks, read_masks
from causalprune.methods import causal_decision
from causalprune.paths import RunPaths
from causalprune.record.features import expand_keep
from causalprune.record.recorder import Recorder
from causalprune.solvers.blocks import block_features

LR = 0.5
# theta_t of a 2-weight layer and L_t, t = 0..5 (dyadic numbers: every product below is exact in fp32).
THETAS = [[0.0, 1.0], [0.5, 0.75], [0.75, 1.25], [0.5, 1.25], [1.5, 0.25], [1.0, 0.5]]
LOSSES = [3.0, 2.5, 2.25, 2.0, 1.5, 1.375]


def _recording(dtype="fp32"):
    """A Recorder fed THETAS/LOSSES by hand: row t holds (theta_{t+1} - theta_t)/lr, loss t is L_t."""
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([THETAS[0]]))
    rec = Recorder(model, ones_masks(model), lr=LR, max_steps=8, dtype=dtype, budget_bytes=1 << 30)
    for t in range(len(THETAS) - 1):
        with torch.no_grad():
            model[0].weight.copy_(torch.tensor([THETAS[t + 1]]))
        rec.after_step(torch.tensor(LOSSES[t]))
    return rec


def _dtheta(s):
    return [b - a for a, b in zip(THETAS[s], THETAS[s + 1])]


def _samples(rec, momentum):
    lf = rec.features(momentum=momentum, granularity="weight")[0]
    y = rec.targets(lag=2 if momentum else 1)
    X = torch.cat([block_features(b, slice(0, y.numel())) for b in lf.blocks], dim=1)
    return X, y


def test_momentum_samples_are_eq16_aligned():
    X, y = _samples(_recording(), momentum=True)
    T = len(THETAS) - 1
    assert X.shape == (T - 2, 6) and y.shape == (T - 2,)
    for s in range(T - 2):
        d0, d1 = _dtheta(s), _dtheta(s + 1)
        want = [v * v for v in d1] + [v * v for v in d0] + [a * b for a, b in zip(d0, d1)]
        assert X[s].tolist() == want, f"sample {s}"
        assert float(y[s]) == LOSSES[s + 2] - LOSSES[s + 1]


def test_first_order_samples_are_eq7_aligned():
    X, y = _samples(_recording(), momentum=False)
    T = len(THETAS) - 1
    assert X.shape == (T - 1, 2)
    for s in range(T - 1):
        assert X[s].tolist() == [v * v for v in _dtheta(s)]
        assert float(y[s]) == LOSSES[s + 1] - LOSSES[s]


def test_pruned_iff_all_three_gammas_are_zero():
    rec = _recording()
    lf = rec.features(momentum=True, granularity="weight")[0]
    # weight 0: only gamma_{k,2} (cross) nonzero -> kept; weight 1: all zero -> pruned.
    g = [torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([-1e-3, 0.0])]
    assert expand_keep(lf, g).tolist() == [[1, 0]]
    g = [torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])]
    assert expand_keep(lf, g).tolist() == [[0, 1]]
    # causal_decision applies the same rule to the solver's three gamma blocks
    cfg = Config(momentum=0.9, l1_coeff=0.0, lasso_epochs=1)
    keep, mags = causal_decision(rec, cfg, torch.Generator().manual_seed(0))
    assert keep["0.weight"].tolist() == [[1, 1]] and bool((mags["0.weight"] > 0).all())


def test_momentum_group_features_are_sums_of_the_three_features(tiny_net):
    torch.manual_seed(1)
    masks = ones_masks(tiny_net)
    masks["fc.weight"][1, :7] = 0
    apply_masks(tiny_net, masks)
    rec = Recorder(tiny_net, masks, lr=0.1, max_steps=6, dtype="fp32")
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(6):
        loss = tiny_net(torch.randn(4, 1, 6, 6)).square().mean()
        opt.zero_grad(); loss.backward(); opt.step()
        rec.after_step(loss)
    n = rec.targets(lag=2).numel()
    per_w = rec.features(momentum=True, granularity="weight")
    per_f = rec.features(momentum=True, granularity="filter")
    for w, f in zip(per_w, per_f):
        for bw, bf in zip(w.blocks, f.blocks):
            xw = block_features(bw, slice(0, n), torch.float64)
            summed = torch.zeros(n, f.n_groups, dtype=torch.float64).index_add_(1, f.gid, xw)
            assert torch.allclose(block_features(bf, slice(0, n), torch.float64), summed, rtol=1e-5, atol=0)


@pytest.mark.parametrize("granularity", ["weight", "filter"])
def test_momentum_run_end_to_end_on_digits(quick_cfg, granularity):
    cfg = quick_cfg.replace(momentum=0.9, granularity=granularity, n_pre=1, n_iter=2, n_prune=1, n_post=1,
                            max_steps_per_epoch=8)
    s = Experiment(cfg, log=lambda m: None).run()
    paths = RunPaths(cfg.run_dir())
    m1, m2 = read_masks(paths.masks(1)), read_masks(paths.masks(2))
    assert all(bool((m2[k] <= m1[k]).all()) for k in m1), "masks only shrink"
    assert 0 <= s["percent_pruned"] <= 100 and s["test_accuracy"] > 20
    if granularity == "filter":
        for m in m2.values():
            rows = m.reshape(m.shape[0], -1)
            assert bool(((rows == rows[:, :1]).all(1)).all()), "filter masks are all-or-nothing per row"
