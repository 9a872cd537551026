"""`causal-prune shrink`: a physically smaller dense model with the masked model's outputs
(within 1e-5), and a one-line refusal for models that are not plain chains."""

import json

import pytest
import torch
from torch import nn

from causalprune.cli import main
from causalprune.data.spec import InputSpec
from causalprune.errors import ConfigError
from causalprune.experiment import Experiment
from causalprune.masks import apply_masks, ones_masks
from causalprune.models import build_model
from causalprune.paths import RunPaths
from causalprune.storage import write_json
from causalprune.structured.flops import layer_macs
from causalprune.structured.plan import structure_report
from causalprune.structured.shrink import load_shrunk, max_abs_diff, shrink_model

from .nets import ResidualNet


def _structured_masks(model, seed=0, p_filter=0.4, p_channel=0.3):
    """Random whole filters and whole input channels pruned, plus some scattered weights."""
    g = torch.Generator().manual_seed(seed)
    masks = ones_masks(model)
    for m in masks.values():
        m[torch.rand(m.shape[0], generator=g) < p_filter] = 0
        if m.dim() == 4:
            m[:, torch.rand(m.shape[1], generator=g) < p_channel] = 0
        m[torch.rand(m.shape, generator=g) < 0.1] = 0
    return masks


def _with_biases(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(0.5 * torch.randn(mod.bias.shape, generator=g))  # pruned filters output relu(b) != 0
    return model


def _check(model, spec, masks, n=64):
    apply_masks(model, masks)
    small, widths = shrink_model(model, masks, spec)
    x = torch.randn(n, spec.channels, spec.size, spec.size, generator=torch.Generator().manual_seed(2))
    assert max_abs_diff(model, small, x) <= 1e-5
    assert max_abs_diff(model, small, x, torch.float64) <= 1e-6, "exact up to the float32 rounding of folded biases"
    rep = structure_report(model, masks, spec)["totals"]
    assert sum(p.numel() for p in small.parameters()) == rep["params_after"] < rep["params_before"]
    assert sum(layer_macs(small, spec).values()) == rep["macs_after"] < rep["macs_before"]
    return small, widths


def test_lenet_shrinks_with_equal_outputs():
    spec = InputSpec(1, 28, 10)
    torch.manual_seed(0)
    model = _with_biases(build_model("lenet", spec))
    small, widths = _check(model, spec, _structured_masks(model))
    assert widths["layers"]["conv1"]["out"] < 20 and widths["layers"]["fc2"]["out"] == 10
    assert widths["layers"]["conv2"]["in"] == widths["layers"]["conv1"]["out"]
    assert small.conv2.weight.shape[1] == small.conv1.weight.shape[0]


def test_mlp_shrinks_with_equal_outputs():
    spec = InputSpec(1, 8, 10)
    torch.manual_seed(0)
    model = _with_biases(build_model("mlp", spec))
    _check(model, spec, _structured_masks(model, seed=3))


class _BNChain(nn.Module):
    """A Sequential chain with BatchNorm, padding, dropout and an adaptive pool."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x)


def test_batchnorm_chain_shrinks_and_unfoldable_constants_stay():
    spec = InputSpec(3, 12, 4)
    torch.manual_seed(0)
    model = _with_biases(_BNChain())
    with torch.no_grad():
        for bn in (model.body[1], model.body[5]):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.bias.uniform_(0.2, 1)
        model.body[1].running_mean[[1, 4]] = -3.0  # so that relu(BN(bias)) of those channels is > 0
    masks = ones_masks(model)
    masks["body.0.weight"][[1, 4]] = 0   # constant channels into a zero-padded conv: must stay
    masks["body.4.weight"][[0, 7]] = 0   # constant channels into a Linear: folded into its bias
    masks["body.4.weight"][:, 5] = 0     # input channel 5 unread: filter 5 of body.0 goes
    small, widths = _check(model, spec, masks)
    rep = structure_report(model, masks, spec)
    assert rep["interfaces"][0]["removed"] == [5] and rep["interfaces"][0]["dead_filters_kept"] == [1, 4]
    assert rep["interfaces"][1]["removed"] == [0, 7] and rep["interfaces"][1]["folded_into_bias"] == 2
    assert widths["norms"] == {"body.1": 7, "body.5": 10} and small.body[1].running_mean.shape == (7,)


@pytest.mark.parametrize("make", [lambda: ResidualNet(), lambda: build_model("resnet18", InputSpec(3, 32, 10))])
def test_residual_models_are_refused_in_one_line(make):
    model = make()
    spec = InputSpec(1, 6, 3) if isinstance(model, ResidualNet) else InputSpec(3, 32, 10)
    masks = ones_masks(model)
    apply_masks(model, masks)
    with pytest.raises(ConfigError, match="residual") as exc:
        shrink_model(model, masks, spec)
    assert "\n" not in str(exc.value)


def test_view_with_fixed_sizes_is_refused():
    class Viewer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(64, 3)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 64))

    model = Viewer()
    with pytest.raises(ConfigError, match="view"):
        shrink_model(model, ones_masks(model), InputSpec(1, 6, 3))


def test_shrink_command_on_a_run(quick_cfg, capsys):
    cfg = quick_cfg.replace(granularity="filter", l1_coeff=3e-12, n_pre=1, n_iter=1, n_prune=1, n_post=1,
                            max_steps_per_epoch=8)
    Experiment(cfg, log=lambda m: None).run()
    paths = RunPaths(cfg.run_dir())
    out = paths.root / "small.pt"
    assert main(["shrink", str(paths.root), "--out", str(out)]) == 0
    assert "max |output difference|" in capsys.readouterr().out
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["max_abs_diff"] <= 1e-5 and rep["params_shrunk"] <= rep["params_masked_model"]
    small, widths = load_shrunk(str(out))
    from causalprune.results.flatness import load_final_model

    masked, _, data = load_final_model(paths.root)
    x = next(iter(data.val))[0]
    assert max_abs_diff(masked, small, x) <= 1e-5
    assert widths["layers"]["fc1"]["out"] == small.fc1.out_features


def test_shrink_command_refuses_resnet_before_loading_data(tmp_path, capsys):
    run = tmp_path / "resnet-run"
    from causalprune.config import Config

    write_json(RunPaths(run).config, Config(model="resnet18", dataset="cifar10").to_dict())
    assert main(["shrink", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: not a plain chain") and "residual" in err and "\n" not in err
