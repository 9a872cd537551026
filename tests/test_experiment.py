"""End-to-end Algorithm 1 on scikit-learn's digits (real data, bundled) with the quick protocol."""

import json

import pytest
import torch

from causalprune.errors import ConfigError
from causalprune.experiment import Experiment
from causalprune.masks import read_masks, sparsity
from causalprune.paths import RunPaths
from causalprune.storage import load_checkpoint

SUMMARY_KEYS = {"method", "model", "dataset", "seed", "params_total", "prunable_total", "prunable_nonzero",
                "percent_pruned", "test_accuracy", "best_val_accuracy", "per_layer", "iterations", "wall_seconds",
                "percent_pruned_of_all_params", "params_nonzero", "macs_dense", "macs_sparse"}


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    out = tmp_path_factory.mktemp("runs")
    cfg = config_from_dict(preset_values("quick"), Config()).replace(out=str(out), device="cpu")
    summary = Experiment(cfg, log=lambda m: None).run()
    return cfg, summary, RunPaths(cfg.run_dir())


def test_summary_and_files(causal_run):
    cfg, s, paths = causal_run
    assert SUMMARY_KEYS <= set(s)
    assert s["method"] == "causal" and s["dataset"] == "digits"
    assert 0 <= s["percent_pruned"] <= 100 and 0 <= s["test_accuracy"] <= 100
    assert s["test_accuracy"] > 50, "an MLP on digits must learn something"
    assert len(s["iterations"]) == cfg.n_iter
    for it in s["iterations"]:
        assert it["record_seconds"] > 0 and it["lasso_seconds"] > 0
    final = read_masks(paths.final_masks)
    assert abs(sparsity(final) - s["percent_pruned"]) < 1e-9
    assert s["prunable_nonzero"] == sum(int(m.sum()) for m in final.values())
    assert s["macs_sparse"] < s["macs_dense"] or s["percent_pruned"] == 0
    header = paths.metrics.read_text().splitlines()[0]
    assert header == "phase,iteration,epoch,step,name,value"
    assert json.loads(paths.config.read_text())["l1_coeff"] == cfg.l1_coeff
    for m in final.values():
        assert m.dtype == torch.uint8


def test_masks_only_shrink_and_rewind_is_exact(causal_run):
    cfg, s, paths = causal_run
    prev = None
    pre = load_checkpoint(paths.pretrained)["model"]
    for it in range(1, cfg.n_iter + 1):
        masks = read_masks(paths.masks(it))
        if prev is not None:
            for k in masks:
                assert bool((masks[k] <= prev[k]).all())
        prev = masks
        state = load_checkpoint(paths.pruned(it))["model"]
        for k, m in masks.items():
            mod = k[: -len(".weight")]
            kept = m.bool()
            # survivors rewound exactly to the post-pretraining values (Algorithm 1, line 7)
            assert torch.equal(state[f"{mod}.weight_orig"][kept], pre[f"{mod}.weight_orig"][kept])
            assert torch.equal(state[f"{mod}.weight_mask"], m.float())
            assert torch.equal(state[f"{mod}.bias"], pre[f"{mod}.bias"])


def test_rerun_resumes_without_redoing(causal_run):
    cfg, s, paths = causal_run
    before = paths.metrics.read_text()
    again = Experiment(cfg, log=lambda m: None).run()
    assert again == json.loads(paths.summary.read_text())
    assert paths.metrics.read_text() == before


def test_differing_config_is_refused(causal_run):
    cfg, s, paths = causal_run
    with pytest.raises(ConfigError, match="n_post"):
        Experiment(cfg.replace(name=paths.root.name, n_post=7), log=lambda m: None)


@pytest.mark.parametrize("method", ["none", "magnitude", "random"])
def test_baselines_same_protocol(quick_cfg, method):
    cfg = quick_cfg.replace(method=method, mag_prune_frac=0.3, n_iter=2, n_post=1)
    s = Experiment(cfg, log=lambda m: None).run()
    if method == "none":
        assert s["percent_pruned"] == 0
    else:
        total = s["prunable_total"]
        assert abs((100 - s["percent_pruned"]) / 100 * total - total * 0.7 ** 2) <= 1
