"""Filter-normalised directions and 2-D loss surfaces (paper Appendix B, eq. 20)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from causalprune.analysis import filter_normalized_direction, loss_surface, save_surface
from causalprune.errors import ConfigError, MaskError

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny ops run much slower with 2 intra-op threads on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def conv_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 4 * 4, 3)).double()


def batches(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 2, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    return [(x[:12], y[:12]), (x[12:], y[12:])]


def some_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    masks = {"0.weight": (torch.rand(4, 2, 3, 3, generator=g) > 0.4).to(torch.uint8),
             "5.weight": (torch.rand(3, 64, generator=g) > 0.5).to(torch.uint8)}
    masks["0.weight"][2] = 0  # an entirely pruned conv filter
    masks["5.weight"][1] = 0  # an entirely pruned Linear row
    return masks


def full_loss(model: nn.Module, data) -> float:
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    with torch.no_grad():
        return float(LOSS(model(x), y))


def test_direction_filters_have_the_trained_norms():
    g = torch.Generator().manual_seed(0)
    params = {"c.weight": torch.randn(4, 2, 3, 3, generator=g), "l.weight": torch.randn(5, 7, generator=g)}
    masks = {"c.weight": torch.ones(4, 2, 3, 3, dtype=torch.uint8)}
    masks["c.weight"][0, 0] = 0
    masks["c.weight"][3] = 0  # whole filter pruned
    d = filter_normalized_direction(params, masks, torch.Generator().manual_seed(1))
    assert set(d) == set(params)
    for name, p in params.items():
        m = masks.get(name, torch.ones_like(p)).to(p.dtype)
        assert d[name].shape == p.shape
        assert torch.isfinite(d[name]).all()
        assert torch.all(d[name][m == 0] == 0)  # pruned coordinates stay zero
        rows_d = d[name].reshape(p.shape[0], -1).norm(dim=1)
        rows_p = (p * m).reshape(p.shape[0], -1).norm(dim=1)
        assert torch.allclose(rows_d, rows_p, rtol=1e-5, atol=0)
    assert torch.all(d["c.weight"][3] == 0)
    # random, yet reproducible from the generator
    again = filter_normalized_direction(params, masks, torch.Generator().manual_seed(1))
    other = filter_normalized_direction(params, masks, torch.Generator().manual_seed(2))
    assert all(torch.equal(d[k], again[k]) for k in d)
    assert not torch.equal(d["l.weight"], other["l.weight"])


def test_direction_of_zero_weights_is_zero_not_nan():
    params = {"w": torch.zeros(3, 4), "b": torch.tensor([0.0, 2.0, -1.0])}
    d = filter_normalized_direction(params, None, torch.Generator().manual_seed(0))
    assert torch.equal(d["w"], torch.zeros(3, 4))
    assert torch.equal(d["b"].abs(), params["b"].abs())  # a 1-D tensor: one filter per entry


def test_surface_grid_and_centre_is_the_model_loss():
    model, data = conv_model(), batches()
    model.eval()
    s = loss_surface(model, LOSS, data, steps=5, span=0.5, progress=False)
    assert s["alpha"].shape == (5,) and s["beta"].shape == (5,) and s["loss"].shape == (5, 5)
    assert np.allclose(s["alpha"], np.linspace(-0.5, 0.5, 5)) and np.allclose(s["beta"], s["alpha"])
    assert s["loss"][2, 2] == pytest.approx(full_loss(model, data), rel=1e-12)
    assert np.isfinite(s["loss"]).all()
    assert np.ptp(s["loss"]) > 0  # the directions are not zero


def test_surface_point_matches_a_manual_perturbation_of_weights_only():
    model, data = conv_model(), batches()
    masks = some_masks(model)
    s = loss_surface(model, LOSS, data, masks=masks, steps=3, span=1.0, seed=7, progress=False)
    # Rebuild the directions as documented: seed, order of the prunable weights, masked point.
    g = torch.Generator().manual_seed(7)
    params = {k: dict(model.named_parameters())[k].detach() * masks[k].double() for k in masks}
    u1 = filter_normalized_direction(params, masks, g)
    u2 = filter_normalized_direction(params, masks, g)
    manual = copy.deepcopy(model).eval()
    with torch.no_grad():
        for k, p in manual.named_parameters():
            if k in params:  # biases and BatchNorm stay put
                p.copy_(params[k] + 1.0 * u1[k] - 1.0 * u2[k])
    assert s["loss"][2, 0] == pytest.approx(full_loss(manual, data), rel=1e-12)


def test_model_is_left_exactly_as_it_was():
    model, data = conv_model(), batches()
    model.train()
    model[4].eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss_surface(model, LOSS, data, masks=some_masks(model), steps=3, progress=False)
    after = model.state_dict()
    assert set(after) == set(state)
    assert all(torch.equal(after[k], state[k]) for k in state)  # weights and BN running stats
    assert model.training and model[1].training and not model[4].training


def test_batchnorm_eval_and_masks_through_prune_reparametrisation():
    plain, data = conv_model(), batches()
    with torch.no_grad():
        plain[1].running_mean.uniform_(-0.3, 0.3)
    masks = some_masks(plain)
    pruned = copy.deepcopy(plain)
    prune.custom_from_mask(pruned[0], "weight", masks["0.weight"].double())
    prune.custom_from_mask(pruned[5], "weight", masks["5.weight"].double())
    plain.train()  # BN must still use running stats: the train-mode surface equals the eval one
    a = loss_surface(plain, LOSS, data, masks=masks, steps=3, progress=False)
    b = loss_surface(pruned, LOSS, data, steps=3, progress=False)
    c = loss_surface(copy.deepcopy(plain).eval(), LOSS, data, masks=masks, steps=3, progress=False)
    assert np.allclose(a["loss"], b["loss"], rtol=1e-12)
    assert np.array_equal(a["loss"], c["loss"])
    # the values of pruned weights do not matter
    with torch.no_grad():
        plain[0].weight[masks["0.weight"] == 0] = 123.0
    d = loss_surface(plain, LOSS, data, masks=masks, steps=3, progress=False)
    assert np.allclose(a["loss"], d["loss"], rtol=1e-12)


def test_include_bias_moves_biases():
    model, data = conv_model(), batches()
    a = loss_surface(model, LOSS, data, steps=3, progress=False)
    b = loss_surface(model, LOSS, data, steps=3, include_bias=True, progress=False)
    assert a["loss"][1, 1] == pytest.approx(b["loss"][1, 1], rel=1e-12)
    assert not np.allclose(a["loss"], b["loss"])


def test_one_shot_iterator_and_errors():
    model, data = conv_model(), batches()
    a = loss_surface(model, LOSS, iter(data), steps=3, progress=False)
    b = loss_surface(model, LOSS, data, steps=3, progress=False)
    assert np.array_equal(a["loss"], b["loss"])  # a generator is materialised, not exhausted
    with pytest.raises(ConfigError):
        loss_surface(model, LOSS, data, steps=1)
    with pytest.raises(MaskError):
        loss_surface(model, LOSS, data, masks={"1.weight": torch.ones(4)})


def test_save_surface_round_trip_and_png(tmp_path):
    alpha = np.linspace(-1, 1, 7)
    surface = {"alpha": alpha, "beta": alpha.copy(), "loss": np.add.outer(alpha ** 2, 2 * alpha ** 2)}
    save_surface(surface, tmp_path / "s.npz", tmp_path / "s.png", title="quadratic bowl")
    with np.load(tmp_path / "s.npz") as z:
        for k in surface:
            assert np.array_equal(z[k], surface[k])
    png = (tmp_path / "s.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "s.png")
    assert img.shape[1] > img.shape[0] > 300  # two panels side by side at 120 dpi
    assert img[..., :3].std() > 0.05  # something was drawn
