"""``--method causal-budget``: causal's per-layer count of zero γ, magnitude's choice within the layer."""

from __future__ import annotations

import torch

from causalprune.experiment import Experiment, ExperimentCallback
from causalprune.masks import current_masks, read_masks, weight_of
from causalprune.methods.budget import causal_budget
from causalprune.models import prunable_layers
from causalprune.paths import RunPaths
from causalprune.storage import load_tensors


class _Watch(ExperimentCallback):
    """The live masks and the weights right before each decision (after the SGD epochs)."""

    def __init__(self):
        self.exp = None
        self.before: dict[int, tuple[dict, dict]] = {}

    def before_decide(self, iteration: int) -> None:
        model = self.exp.model
        weights = {f"{n}.weight": weight_of(m).detach().clone() for n, m in prunable_layers(model).items()}
        self.before[iteration] = (current_masks(model), weights)


def test_each_layer_loses_its_zero_gamma_count_and_keeps_its_largest_weights(quick_cfg):
    cfg = quick_cfg.replace(method="causal-budget", n_iter=3, l1_coeff=3e-12, share_pretraining=False)
    watch = _Watch()
    exp = Experiment(cfg, callbacks=[watch], log=lambda m: None)
    watch.exp = exp
    exp.run()
    paths = RunPaths(cfg.run_dir())
    pruned_some = 0
    for it in range(1, cfg.n_iter + 1):
        old, weights = watch.before[it]
        new = read_masks(paths.masks(it))
        gammas = load_tensors(paths.gammas(it))  # |γ| of this iteration's causal fit, one per live weight
        for k in old:
            live = old[k].bool()
            assert gammas[k].numel() == int(live.sum())
            zero_gamma = int((gammas[k] == 0).sum())
            lost = int(live.sum() - new[k].bool().sum())
            assert lost == zero_gamma, f"iteration {it}, {k}: lost {lost} weights, causal has {zero_gamma} zero γ"
            kept, dropped = weights[k].abs()[new[k].bool()], weights[k].abs()[live & ~new[k].bool()]
            if len(dropped) and len(kept):
                assert dropped.max() <= kept.min(), f"iteration {it}, {k}: a pruned weight outweighs a kept one"
            pruned_some += lost
    assert pruned_some > 0


def test_the_budget_counts_live_weights_only():
    masks = {"a": torch.tensor([1, 1, 0, 1], dtype=torch.uint8), "b": torch.tensor([0, 0], dtype=torch.uint8)}
    keep = {"a": torch.tensor([1, 0, 1, 1], dtype=torch.uint8), "b": torch.tensor([1, 1], dtype=torch.uint8)}
    assert causal_budget(keep, masks) == {"a": 2, "b": 0}


def test_causal_budget_differs_from_causal_only_in_which_weights(quick_cfg):
    """Iteration 1 from the same epochs: the same count per layer as causal, chosen by magnitude."""
    out = {}
    for method in ("causal", "causal-budget"):
        cfg = quick_cfg.replace(method=method, n_iter=1, l1_coeff=3e-12)
        Experiment(cfg, log=lambda m: None).run()
        out[method] = read_masks(RunPaths(cfg.run_dir()).masks(1))
    for k in out["causal"]:
        assert int(out["causal"][k].sum()) == int(out["causal-budget"][k].sum())
    assert any(not torch.equal(out["causal"][k], out["causal-budget"][k]) for k in out["causal"])
