"""The torch.nn.utils.prune front end: CausalUnstructured, causal_unstructured, global_causal_unstructured."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from causalprune.errors import MaskError
from causalprune.prune import CausalUnstructured, causal_gammas, causal_unstructured, global_causal_unstructured
from causalprune.pruner import CausalPruner


def _gamma(shape, frac_zero: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    gamma = torch.randn(shape, generator=g)
    gamma[torch.rand(shape, generator=g) < frac_zero] = 0.0
    return gamma


def test_mask_is_gamma_nonzero_and_torch_tools_understand_it(tiny_net):
    w = tiny_net.fc.weight.detach().clone()
    gamma = _gamma(w.shape, 0.4, 0)
    out = causal_unstructured(tiny_net.fc, "weight", gamma)
    assert out is tiny_net.fc and prune.is_pruned(tiny_net)
    assert torch.equal(tiny_net.fc.weight_mask, (gamma != 0).float())
    assert torch.equal(tiny_net.fc.weight, w * (gamma != 0))
    assert {"fc.weight_orig", "fc.weight_mask"} <= set(tiny_net.state_dict())
    prune.remove(tiny_net.fc, "weight")
    assert not prune.is_pruned(tiny_net)
    assert isinstance(tiny_net.fc.weight, nn.Parameter)
    assert torch.equal(tiny_net.fc.weight.detach(), w * (gamma != 0))


def test_second_call_multiplies_into_the_existing_mask(tiny_net):
    shape = tiny_net.conv.weight.shape
    g1, g2 = _gamma(shape, 0.3, 1), _gamma(shape, 0.3, 2)
    causal_unstructured(tiny_net.conv, "weight", g1)
    causal_unstructured(tiny_net.conv, "weight", g2)  # goes through a PruningContainer
    assert torch.equal(tiny_net.conv.weight_mask, ((g1 != 0) & (g2 != 0)).float())
    # Mixing with a torch method also only shrinks the mask.
    before = tiny_net.conv.weight_mask.clone()
    prune.l1_unstructured(tiny_net.conv, "weight", amount=3)
    after = tiny_net.conv.weight_mask
    assert bool((after <= before).all()) and int((before - after).sum()) == 3


def test_global_equals_per_layer_and_accepts_all_key_styles(tiny_net):
    gammas = {"conv.weight": _gamma(tiny_net.conv.weight.shape, 0.5, 3),
              "fc.weight": _gamma(tiny_net.fc.weight.shape, 0.5, 4)}
    params = [(tiny_net.conv, "weight"), (tiny_net.fc, "weight")]
    variants = [dict(gammas=gammas, model=tiny_net),
                dict(gammas={(tiny_net.conv, "weight"): gammas["conv.weight"],
                             (tiny_net.fc, "weight"): gammas["fc.weight"]}),
                dict(gammas=[gammas["conv.weight"], gammas["fc.weight"]])]
    state = copy.deepcopy(tiny_net.state_dict())
    for kw in variants:
        net = type(tiny_net)()
        net.load_state_dict(state)
        ps = [(net.conv, "weight"), (net.fc, "weight")]
        g = kw["gammas"]
        if isinstance(g, dict) and not isinstance(next(iter(g)), str):
            g = {(net.conv if m is tiny_net.conv else net.fc, n): v for (m, n), v in g.items()}
        global_causal_unstructured(ps, g, **({"model": net} if "model" in kw else {}))
        for (m, _), key in zip(ps, gammas):
            assert torch.equal(m.weight_mask, (gammas[key] != 0).float()), key
    with pytest.raises(MaskError, match="model="):
        global_causal_unstructured(params, gammas)


def test_shape_and_missing_gamma_errors(tiny_net):
    with pytest.raises(MaskError, match="shape"):
        causal_unstructured(tiny_net.fc, "weight", torch.ones(3, 3))
    with pytest.raises(MaskError, match="no gamma"):
        global_causal_unstructured([(tiny_net.conv, "weight"), (tiny_net.fc, "weight")],
                                   {"conv.weight": torch.ones_like(tiny_net.conv.weight)}, model=tiny_net)
    assert not prune.is_pruned(tiny_net)  # nothing half-applied


def test_method_class_is_a_base_pruning_method():
    assert issubclass(CausalUnstructured, prune.BasePruningMethod)
    m = CausalUnstructured()
    t = torch.tensor([0.0, 1.0, -2.0, 0.0])
    assert torch.equal(m.compute_mask(t, torch.tensor([1.0, 1.0, 0.0, 1.0])), torch.tensor([0.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize("granularity,l1", [("weight", 1e-9), ("filter", 1e-7)])
def test_causal_gammas_reproduce_the_pruner_masks(granularity, l1):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = CausalPruner(model, opt, l1_coeff=l1, granularity=granularity, record_dtype="fp32")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(256, 8, generator=g), torch.randint(0, 3, (256,), generator=g)
    for i in range(0, 256, 8):
        loss = F.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(loss)
    masks = pruner.compute_masks()
    gammas = causal_gammas(pruner)
    assert gammas.keys() == masks.keys()
    for k in masks:
        assert gammas[k].shape == masks[k].shape
        assert torch.equal((gammas[k] != 0).to(torch.uint8), masks[k]), k
    assert 0 < sum(int((m == 0).sum()) for m in masks.values()) < sum(m.numel() for m in masks.values())
    global_causal_unstructured([(model[0], "weight"), (model[2], "weight")], gammas, model=model)
    assert torch.equal(model[0].weight_mask.to(torch.uint8), masks["0.weight"])
