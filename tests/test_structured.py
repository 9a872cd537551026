"""Structured pruning by weight sharing (paper §3/§5 (i)): group features, all-or-nothing masks,
the parameters and MACs the pruned structure removes, and pruned_channels.json of a run."""

import json

import pytest
import torch

from causalprune.config import Config
from causalprune.data.spec import InputSpec
from causalprune.experiment import Experiment
from causalprune.masks import apply_masks, ones_masks, read_masks
from causalprune.methods import causal_decision
from causalprune.paths import RunPaths
from causalprune.record.features import group_ids
from causalprune.record.recorder import Recorder
from causalprune.solvers.blocks import block_features
from causalprune.structured.flops import layer_macs
from causalprune.structured.plan import structure_report

from .conftest import train_tiny
from .nets import ResidualNet


def _record(model, masks, steps=12, lr=0.05):
    apply_masks(model, masks)
    rec = Recorder(model, masks, lr=lr, max_steps=steps, dtype="fp32")
    train_tiny(model, [rec], steps=steps, lr=lr, seed=3)
    return rec


def _partly_pruned(tiny_net):
    masks = ones_masks(tiny_net)
    masks["conv.weight"][2, 0, :2] = 0   # some weights already pruned: their dtheta is not recorded
    masks["fc.weight"][:, 5] = 0
    return masks


@pytest.mark.parametrize("granularity", ["filter", "channel", "layer"])
def test_group_feature_is_sum_of_squared_deltas(tiny_net, granularity):
    rec = _record(tiny_net, _partly_pruned(tiny_net))
    n = rec.targets().numel()
    D = rec.deltas().double() * rec.lr  # dtheta
    for lf in rec.features(momentum=False, granularity=granularity):
        flat = lf.slot.idx if lf.slot.idx is not None else torch.arange(lf.slot.param.numel())
        gid, n_groups = group_ids(lf.slot.param.shape, flat, granularity)
        want = torch.zeros(n, n_groups, dtype=torch.float64).index_add_(
            1, gid, D[:n, lf.slot.start:lf.slot.stop] ** 2)
        got = block_features(lf.blocks[0], slice(0, n), torch.float64)
        assert torch.allclose(got, want, rtol=1e-5, atol=0)


def _all_or_nothing(mask, granularity):
    if granularity == "filter":
        units = mask.reshape(mask.shape[0], -1)
    elif granularity == "channel":
        units = mask.transpose(0, 1).reshape(mask.shape[1], -1)
    else:
        units = mask.reshape(1, -1)
    return bool(((units == units[:, :1]).all(1)).all())


@pytest.mark.parametrize("granularity", ["filter", "channel", "layer"])
def test_structured_masks_are_all_or_nothing(tiny_net, granularity):
    rec = _record(tiny_net, ones_masks(tiny_net))
    mixed = False
    for l1 in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
        cfg = Config(granularity=granularity, l1_coeff=l1)
        keep, _ = causal_decision(rec, cfg, torch.Generator().manual_seed(0))
        for k, m in keep.items():
            assert _all_or_nothing(m, granularity), f"{granularity} mask of {k} at l1={l1}"
        flat = torch.cat([m.reshape(-1) for m in keep.values()])
        mixed |= bool(flat.any()) and not bool(flat.all())
    assert mixed, "no l1 value gave a partly pruned network: the test would prove nothing"


def test_structure_counts_by_hand(tiny_net):
    """TinyNet: conv 1->4 (3x3, 4x4 outputs), fc 64->3. Pruning conv filter 1 removes its 9 weights
    and bias, and the 16 fc columns that read its 4x4 outputs (x 3 rows)."""
    masks = ones_masks(tiny_net)
    masks["conv.weight"][1] = 0
    apply_masks(tiny_net, masks)
    spec = InputSpec(1, 6, 3)
    rep = structure_report(tiny_net, masks, spec)
    t = rep["totals"]
    assert rep["chain"] and rep["interfaces"][0]["removed"] == [1]
    assert t["params_removed"] == 9 + 1 + 16 * 3
    assert t["macs_removed"] == 9 * 16 + 16 * 3
    assert t["macs_before"] == sum(layer_macs(tiny_net, spec).values())
    assert rep["layers"]["conv"]["pruned_filters"] == [1]
    assert rep["layers"]["fc"]["in_after"] == 48


def test_dead_input_channel_removes_the_producer_filter(tiny_net):
    masks = ones_masks(tiny_net)
    masks["fc.weight"][:, 32:48] = 0          # fc no longer reads conv channel 2
    apply_masks(tiny_net, masks)
    rep = structure_report(tiny_net, masks, InputSpec(1, 6, 3))
    assert rep["interfaces"][0]["removed"] == [2]
    assert rep["layers"]["fc"]["pruned_input_channels"] == [2]
    assert rep["totals"]["params_removed"] == 9 + 1 + 16 * 3


def test_residual_model_gets_a_layer_local_report():
    model = ResidualNet()
    masks = ones_masks(model)
    masks["b.weight"][3] = 0
    apply_masks(model, masks)
    rep = structure_report(model, masks, InputSpec(1, 6, 3))
    assert not rep["chain"] and "residual" in rep["reason"]
    assert rep["layers"]["b"]["pruned_filters"] == [3]
    assert rep["totals"]["params_removed"] == 4 * 9  # only b's own filter weights; its bias stays
    json.dumps(rep)


def test_run_exports_pruned_channels(quick_cfg):
    cfg = quick_cfg.replace(granularity="filter", l1_coeff=3e-12, n_pre=1, n_iter=1, n_prune=1, n_post=1,
                            max_steps_per_epoch=8)
    s = Experiment(cfg, log=lambda m: None).run()
    paths = RunPaths(cfg.run_dir())
    rep = json.loads(paths.structure.read_text())
    final = read_masks(paths.final_masks)
    for key, m in final.items():
        name = key[: -len(".weight")]
        dead = (~m.reshape(m.shape[0], -1).bool().any(1)).nonzero().flatten().tolist()
        assert rep["layers"][name]["pruned_filters"] == dead
    assert s["structure"] == rep["totals"] and rep["chain"]
    t = s["structure"]
    assert t["params_after"] == t["params_before"] - t["params_removed"] and t["params_removed"] >= 0
    assert t["macs_before"] == s["macs_dense"]
