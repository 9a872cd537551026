"""--scope network and --solver exact|online: the streaming fit equals the in-order reference pass,
the network Lasso is one regression, the exact solver is the Lasso minimiser (<= T weights per layer)."""

import pytest
import torch

from causalprune import solvers
from causalprune.config import Config
from causalprune.data import load_data
from causalprune.errors import RecordMemoryError
from causalprune.experiment import Experiment
from causalprune.masks import ones_masks, read_masks
from causalprune.methods import causal_decision
from causalprune.methods.causal import keep_from_gammas
from causalprune.models import build_model
from causalprune.paths import RunPaths
from causalprune.record.online import OnlineCausal
from causalprune.record.recorder import Recorder
from causalprune.solvers import LassoSchedule, solve_reference
from causalprune.solvers.blocks import block_features
from causalprune.train import train_epoch

from .conftest import train_tiny

L1S = (1e-10, 1e-9, 1e-8)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", model="mlp", batch_size=64, seed=0)


def _reference_in_order(rec, cfg):
    """solve_reference(shuffle=False, epochs=1) on the recording, per layer or over the network."""
    feats = rec.features(momentum=cfg.momentum > 0, granularity=cfg.granularity)
    y = rec.targets(lag=2 if cfg.momentum > 0 else 1)
    sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=1)
    if cfg.scope == "layer":
        return [solve_reference(lf.blocks, y, cfg.l1_coeff, schedule=sched, shuffle=False) for lf in feats]
    flat = solve_reference([b for lf in feats for b in lf.blocks], y, cfg.l1_coeff, schedule=sched, shuffle=False)
    out, i = [], 0
    for lf in feats:
        out.append(flat[i:i + len(lf.blocks)])
        i += len(lf.blocks)
    return out


@pytest.mark.parametrize("momentum,granularity,scope", [(0.0, "weight", "layer"), (0.9, "weight", "network"),
                                                        (0.9, "filter", "layer"), (0.0, "channel", "network")])


def test_online_callback_equals_in_order_reference(digits, momentum, granularity, scope):
    torch.manual_seed(0)
    model = build_model("mlp", digits.spec)
    masks = ones_masks(model)
    cfgs = [Config(lr_prune=1e-2, momentum=momentum, granularity=granularity, scope=scope, l1_coeff=a,
                   solver="online") for a in L1S]
    rec = Recorder(model, masks, lr=1e-2, max_steps=16, dtype="bf16")
    online = [OnlineCausal(model, masks, c) for c in cfgs]
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=momentum)
    train_epoch(model, digits.train, opt, seed=1, callbacks=[rec, *online], max_steps=10)
    mixed = False
    for cfg, on in zip(cfgs, online):
        assert on.samples == rec.targets(lag=2 if momentum else 1).numel()
        ref = _reference_in_order(rec, cfg)
        for r_layer, o_layer in zip(ref, on.gammas()):
            for r, o in zip(r_layer, o_layer):
                assert torch.equal(r, o), "the streaming fit must reproduce the in-order pass bit for bit"
        keep, mags = keep_from_gammas(on.layers, on.gammas())
        # the recording-based path of --solver online (used by CausalPruner) gives the same masks
        keep2, mags2 = causal_decision(rec, cfg, torch.Generator().manual_seed(0))
        assert all(torch.equal(keep[k], keep2[k]) and torch.equal(mags[k], mags2[k]) for k in keep)
        flat = torch.cat([m.reshape(-1) for m in keep.values()])
        mixed |= bool(flat.any()) and not bool(flat.all())
    assert mixed, "no l1 value gave a partly pruned network: the comparison would prove little"


def test_online_memory_does_not_grow_with_steps(digits):
    torch.manual_seed(0)
    model = build_model("mlp", digits.spec)
    on = OnlineCausal(model, ones_masks(model), Config(lr_prune=1e-2, momentum=0.9, solver="online"))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    train_epoch(model, digits.train, opt, seed=1, callbacks=[on], max_steps=4)
    held = on.held_bytes()
    train_epoch(model, digits.train, opt, seed=2, callbacks=[on], max_steps=20)
    assert on.held_bytes() == held and on.steps == 24 and on.samples == 22
    assert held < 20 * on.width * 4, "O(d): a few vectors of the live weights, not T of them"


def test_network_scope_is_one_regression(recorded_tiny_net):
    tiny_net, rec = recorded_tiny_net
    cfg = Config(scope="network", l1_coeff=1e-6)
    _, mags = causal_decision(rec, cfg, torch.Generator().manual_seed(7))
    feats = rec.features(momentum=False, granularity="weight")
    sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=cfg.lasso_epochs)
    flat = solve_reference([lf.blocks[0] for lf in feats], rec.targets(), cfg.l1_coeff, schedule=sched,
                           shuffle=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(mags["conv.weight"], flat[0].abs()) and torch.equal(mags["fc.weight"], flat[1].abs())
    _, per_layer = causal_decision(rec, cfg.replace(scope="layer"), torch.Generator().manual_seed(7))
    assert not torch.equal(per_layer["fc.weight"], mags["fc.weight"]), "per-layer and network fits differ"


def test_exact_solver_is_the_lasso_minimiser(recorded_tiny_net):
    sklearn = pytest.importorskip("sklearn.linear_model")
    tiny_net, rec = recorded_tiny_net
    y = rec.targets()
    n = y.numel()
    for lf in rec.features(momentum=False, granularity="weight"):
        X = block_features(lf.blocks[0], slice(0, n), torch.float64)
        alpha_max = float((X.T @ y.double()).abs().max()) / n
        alpha = 0.05 * alpha_max
        cfg = Config(solver="exact", l1_coeff=alpha)
        keep, mags = causal_decision(rec, cfg, torch.Generator())
        c, b = float(X.abs().max()), float(y.abs().max())  # the same problem, rescaled to O(1) numbers
        ref = sklearn.Lasso(alpha=alpha / (b * c), fit_intercept=False, tol=1e-10, max_iter=10**6)
        coef = torch.from_numpy(ref.fit((X / c).numpy(), (y.double() / b).numpy()).coef_) * b / c
        got = mags[lf.key].reshape(-1)
        assert torch.allclose(got.double(), coef.abs(), rtol=1e-3, atol=1e-4 * float(coef.abs().max()))
        assert int(keep[lf.key].sum()) <= n, "an exact Lasso keeps at most T weights per layer"
        assert int(keep[lf.key].sum()) >= 1


def test_exact_keeps_at_most_T_weights_even_with_a_small_penalty(recorded_tiny_net):
    tiny_net, rec = recorded_tiny_net
    y = rec.targets()
    n = y.numel()
    feats = rec.features(momentum=False, granularity="weight")
    alpha_max = min(float((block_features(lf.blocks[0], slice(0, n), torch.float64).T @ y.double()).abs().max()) / n
                    for lf in feats)  # above it every gamma is 0
    alpha = 1e-3 * alpha_max
    keep, _ = causal_decision(rec, Config(solver="exact", l1_coeff=alpha), torch.Generator())
    ref, _ = causal_decision(rec, Config(solver="reference", l1_coeff=alpha), torch.Generator().manual_seed(0))
    for k in keep:
        assert 1 <= int(keep[k].sum()) <= n < int(ref[k].sum())


def test_exact_refuses_what_does_not_fit(recorded_tiny_net, monkeypatch):
    tiny_net, rec = recorded_tiny_net
    monkeypatch.setattr(solvers, "free_memory_bytes", lambda device: 1000)
    with pytest.raises(RecordMemoryError, match="--scope layer"):
        causal_decision(rec, Config(solver="exact", scope="network", l1_coeff=1e-9), torch.Generator())


def _fit_on_devices(tiny_net, devices, steps=12, lr=2.0 ** -4, online_l1=1e-7):
    """One training run on the CPU, recorded as it goes by a Recorder and an OnlineCausal on each of
    ``devices`` (the recorder takes the weights to its own device), so every device fits the same
    samples: dtheta is a float32 difference and lr a power of two, so dtheta / lr is exact on any device
    (CUDA divides by a scalar as a product with its reciprocal). Per device: the recorder, the exact
    decision, the online gammas and the online decision. The exact penalty is half the smallest
    alpha_max of the layers (on the first device's recording), so each layer keeps some weights but
    at most T."""
    masks = ones_masks(tiny_net)
    recs = [Recorder(tiny_net, masks, lr=lr, max_steps=steps, dtype="fp32", device=torch.device(d)) for d in devices]
    cfg_on = Config(solver="online", l1_coeff=online_l1, lr_prune=lr, record_dtype="fp32")
    ons = [OnlineCausal(tiny_net, masks, cfg_on, device=torch.device(d)) for d in devices]
    train_tiny(tiny_net, recs + ons, steps=steps, lr=lr, seed=5)
    y = recs[0].targets().cpu().double()
    n = y.numel()
    alpha = 0.5 * min(float((block_features(lf.blocks[0], slice(0, n), torch.float64).cpu().T @ y).abs().max()) / n
                      for lf in recs[0].features(momentum=False, granularity="weight"))
    out = []
    for rec, on in zip(recs, ons):
        exact = causal_decision(rec, Config(solver="exact", l1_coeff=alpha), torch.Generator())
        out.append((rec, exact, on.gammas(), keep_from_gammas(on.layers, on.gammas())))
    return out


def _assert_same_fits(cpu, dev):
    """The fits of the same samples on two devices: exact masks equal, online gammas close and masks equal."""
    (rec_c, exact_c, gam_c, online_c), (rec_d, exact_d, gam_d, online_d) = cpu, dev
    assert torch.equal(rec_c.deltas(), rec_d.deltas().cpu()) and torch.equal(rec_c.targets(), rec_d.targets().cpu())
    n = rec_c.targets().numel()
    for k, m in exact_c.keep.items():
        assert 1 <= int(m.sum()) <= n, "an exact Lasso that keeps some weights, at most T (else the check is empty)"
        assert torch.equal(exact_d.keep[k].cpu(), m), f"exact solver: {k} masks differ between devices"
    for layer_c, layer_d in zip(gam_c, gam_d):
        for a, b in zip(layer_c, layer_d):
            assert torch.allclose(b.cpu(), a, rtol=1e-5, atol=1e-6 * float(a.abs().max())), "online gammas differ"
    flat = torch.cat([m.reshape(-1) for m in online_c.keep.values()])
    assert bool(flat.any()) and not bool(flat.all()), "a partly pruned online mask (else the check is empty)"
    for k, m in online_c.keep.items():
        assert torch.equal(online_d.keep[k].cpu(), m), f"online solver: {k} masks differ between devices"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_exact_and_online_on_the_gpu_match_the_cpu(tiny_net):
    cpu, gpu = _fit_on_devices(tiny_net, ["cpu", "cuda"])
    rec, exact, gammas, online = gpu
    assert rec.buffer.device.type == "cuda" and all(m.device.type == "cuda" for m in exact.gammas.values())
    assert all(g.device.type == "cuda" for layer in gammas for g in layer)
    assert all(m.device.type == "cuda" for m in online.keep.values())
    _assert_same_fits(cpu, gpu)


@pytest.mark.parametrize("settings", [dict(solver="online"), dict(scope="network"),
                                      dict(solver="exact", allow_empty_layers=True)])


def test_solver_and_scope_runs_end_to_end_on_digits(quick_cfg, settings):
    cfg = quick_cfg.replace(n_pre=1, n_iter=2, n_prune=1, n_post=1, max_steps_per_epoch=8, **settings)
    s = Experiment(cfg, log=lambda m: None).run()
    paths = RunPaths(cfg.run_dir())
    m1, m2 = read_masks(paths.masks(1)), read_masks(paths.masks(2))
    assert all(bool((m2[k] <= m1[k]).all()) for k in m1), "masks only shrink"
    assert 0 <= s["percent_pruned"] <= 100 and len(s["iterations"]) == 2
    if cfg.solver == "exact":  # T = 8 steps, 7 samples: an exact Lasso keeps at most 7 weights per layer
        assert all(int(m.sum()) <= 7 for m in list(m1.values()) + list(m2.values()))
    if cfg.solver == "online":
        assert all(it["record_bytes"] < 8 * 4 * s["prunable_total"] for it in s["iterations"])
