"""`causal-prune export`: masks and pruned state_dicts round-trip into fresh models; the efficiency
figures of summary.json agree with torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from causalprune.cli import main
from causalprune.data import dataset_spec
from causalprune.data.spec import InputSpec
from causalprune.errors import CheckpointError, ConfigError, MaskError
from causalprune.experiment import Experiment
from causalprune.masks import apply_masks, current_masks, load_masks, ones_masks, read_masks, save_masks
from causalprune.models import build_model, count_parameters
from causalprune.results.export import export_run, permanent_state_dict
from causalprune.storage import load_checkpoint, load_tensors, read_json
from causalprune.structured.flops import forward_macs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    cfg = config_from_dict({**preset_values("quick"), "n_pre": 1, "n_iter": 1, "n_prune": 1, "n_post": 1,
                            "device": "cpu", "out": str(tmp_path_factory.mktemp("export"))}, Config())
    exp = Experiment(cfg, log=lambda m: None)
    exp.run()
    return exp


def _fresh(run):
    torch.manual_seed(123)  # different initial weights from the run's
    return build_model(run.cfg.model, dataset_spec(run.cfg.dataset, run.cfg.model))


def _final_model(run):
    model = _fresh(run)
    apply_masks(model, ones_masks(model))
    model.load_state_dict(load_checkpoint(run.paths.final)["model"])
    return model.eval()


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_masks_round_trip(run, fmt, tmp_path):
    dest = export_run(run.paths.root, fmt=fmt, what="masks", out=tmp_path / f"m.{fmt}")
    model = _fresh(run)
    load_masks(model, dest)
    want = read_masks(run.paths.final_masks)
    got = current_masks(model)
    assert 0 < sum(int((m == 0).sum()) for m in want.values())
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_pruned_state_dict_loads_into_a_fresh_unpruned_model(run, fmt):
    dest = export_run(run.paths.root, fmt=fmt, what="state_dict")
    assert dest.parent == run.paths.root / "export"
    state = load_tensors(dest)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    model = _fresh(run)
    model.load_state_dict(state, strict=True)  # plain `weight` keys
    masks = read_masks(run.paths.final_masks)
    for key, mask in masks.items():
        w = model.get_parameter(key).detach()
        assert bool((w[mask == 0] == 0).all()) and bool((w[mask == 1] != 0).any())
    x = torch.randn(5, *model_input(run))
    assert torch.allclose(model.eval()(x), _final_model(run)(x))


def model_input(run) -> tuple[int, int, int]:
    spec = run.data.spec
    return spec.channels, spec.size, spec.size


def test_permanent_state_dict_is_prune_remove():
    sd = {"a.weight_orig": torch.tensor([1.0, 2.0]), "a.weight_mask": torch.tensor([0.0, 1.0]),
          "a.bias": torch.tensor([3.0])}
    assert {k: v.tolist() for k, v in permanent_state_dict(sd).items()} == {"a.weight": [0.0, 2.0], "a.bias": [3.0]}


def test_mismatched_masks_give_mask_error(run, tmp_path):
    masks = read_masks(run.paths.final_masks)
    key = next(iter(masks))
    renamed = {("renamed." + k if k == key else k): v for k, v in masks.items()}
    save_masks(tmp_path / "renamed.safetensors", renamed)
    with pytest.raises(MaskError, match="renamed"):
        load_masks(_fresh(run), tmp_path / "renamed.safetensors")
    reshaped = dict(masks)
    reshaped[key] = masks[key].reshape(-1)[:-1].clone()
    save_masks(tmp_path / "reshaped.safetensors", reshaped)
    with pytest.raises(MaskError, match=key):
        load_masks(_fresh(run), tmp_path / "reshaped.safetensors")


def test_export_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="not a causal-prune run"):
        export_run(tmp_path)
    with pytest.raises(ConfigError, match=r"\.pt"):
        export_run(run.paths.root, fmt="pt", out=tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="iteration 7"):
        export_run(run.paths.root, iteration=7)


def test_cli_export_prints_the_efficiency_figures(run, tmp_path, capsys):
    out = tmp_path / "sd.pt"
    assert main(["export", str(run.paths.root), "--format", "pt", "--what", "state_dict", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    s = read_json(run.paths.summary)
    assert f"wrote {out}" in text
    for v in (s["params_total"], s["params_nonzero"], s["prunable_total"], s["macs_dense"], s["macs_sparse"]):
        assert f"{v:,}" in text
    assert "no time" in text
    assert main(["export", str(run.paths.root), "--iteration", "1"]) == 0
    assert (run.paths.root / "export" / "masks_iter_01.safetensors").exists()


def test_summary_figures_are_consistent(run):
    s = read_json(run.paths.summary)
    masks = read_masks(run.paths.final_masks)
    total, prunable = count_parameters(_fresh(run))
    kept = sum(int(m.sum()) for m in masks.values())
    assert (s["params_total"], s["prunable_total"], s["prunable_nonzero"]) == (total, prunable, kept)
    assert s["params_nonzero"] == total - (prunable - kept)
    assert s["percent_pruned"] == pytest.approx(100 * (prunable - kept) / prunable)
    assert s["percent_pruned_of_all_params"] == pytest.approx(100 * (prunable - kept) / total)
    # An MLP uses each weight once per input: sparse MACs are exactly the kept weights.
    assert s["macs_dense"] == prunable and s["macs_sparse"] == kept


@pytest.mark.parametrize("name,spec", [("mlp", InputSpec(1, 8, 10)), ("lenet", InputSpec(3, 32, 10)),
                                       ("lenet", InputSpec(1, 28, 10))])
def test_dense_macs_match_torch_flop_counter(name, spec):
    torch.manual_seed(0)
    model = build_model(name, spec).eval()
    masks = ones_masks(model)
    dense, sparse = forward_macs(model, spec, masks)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, spec.channels, spec.size, spec.size))
    assert dense == counter.get_total_flops() // 2 and sparse == dense
    # With masks applied the dense figure is unchanged (dense kernels) and torch still counts it.
    half = {k: (torch.rand(m.shape) < 0.5).to(torch.uint8) for k, m in masks.items()}
    apply_masks(model, half)
    d2, s2 = forward_macs(model, spec, half)
    assert d2 == dense and s2 < dense
