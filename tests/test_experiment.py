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


def test_experiment_callbacks_see_every_stage_and_change_nothing(quick_cfg):
    """ExperimentCallback hooks are called at each stage, in order, and leave the result unchanged."""
    from causalprune.experiment import ExperimentCallback

    class Steps:
        def __init__(self):
            self.n = 0

        def after_step(self, loss):
            self.n += 1

    class Watch(ExperimentCallback):
        def __init__(self):
            self.events, self.steps = [], {}

        def epoch_callbacks(self, stage, index):
            self.events.append(f"{stage}:{index}")
            self.steps[f"{stage}:{index}"] = Steps()
            return [self.steps[f"{stage}:{index}"]]

        def before_decide(self, iteration):
            self.events.append(f"decide:{iteration}")

        def after_decide(self, iteration, masks):
            self.events.append(f"masks:{iteration}:{sparsity(masks) > 0}")

        def after_run(self, summary):
            self.events.append("done")

    cfg = quick_cfg.replace(n_iter=1, n_post=1, max_steps_per_epoch=3)
    watch = Watch()
    with_hooks = Experiment(cfg, log=lambda m: None, callbacks=[watch]).run()
    assert watch.events == ["pretrain:1", "pretrain:2", "record:1.1", "record:1.2", "decide:1", "masks:1:True",
                            "post:1", "done"]
    assert all(s.n == 3 for s in watch.steps.values()), "every epoch's steps reach the callbacks"
    plain = Experiment(cfg.replace(out=cfg.out + "-plain"), log=lambda m: None).run()
    assert plain["percent_pruned"] == with_hooks["percent_pruned"]
    assert plain["test_accuracy"] == with_hooks["test_accuracy"]


def test_registries_and_config_choices_agree():
    """Each registry is the one dispatch for its flag: the choices the CLI offers are its keys."""
    from causalprune.config import CHOICES
    from causalprune.data.sizes import MODEL_INPUT_SIZE
    from causalprune.methods import METHODS
    from causalprune.models import MODELS
    from causalprune.solvers import SOLVERS

    assert set(METHODS) == set(CHOICES["method"])
    assert set(SOLVERS) == set(CHOICES["solver"])
    assert set(MODEL_INPUT_SIZE) == set(MODELS), "every model declares the input size the data pipeline makes"
