"""Top Hessian eigenvalues: power iteration with deflation vs the exact Hessian of a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

from causalprune.analysis import power_top_k, top_eigenvalues
from causalprune.errors import ConfigError, MaskError

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny double-backward ops run ~20x slower with 2 intra-op threads on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def tiny_batches(seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (24,), generator=g)
    # unequal batch sizes: the mean must be sample-weighted to equal the full-set loss
    return [(x[:16], y[:16]), (x[16:], y[16:])]


def exact_hessian(model: nn.Module, batches, names: list[str], masks: dict | None = None) -> torch.Tensor:
    """Hessian of the full-set mean loss w.r.t. the flattened named tensors at theta * mask."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    point = [params[n].detach() * (masks[n].double() if masks and n in masks else 1.0) for n in names]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        return LOSS(functional_call(model, parts, (x,)), y)

    flat = torch.cat([p.reshape(-1) for p in point])
    return torch.autograd.functional.hessian(f, flat)


def top_exact(h: torch.Tensor, k: int, keep: torch.Tensor | None = None) -> list[float]:
    if keep is not None:
        idx = keep.nonzero().squeeze(1)
        h = h[idx][:, idx]
    return torch.linalg.eigvalsh(h).flip(0)[:k].tolist()


def assert_close(found: list[float], expected: list[float], rel: float = 1e-3) -> None:
    assert len(found) == len(expected)
    for f, e in zip(found, expected):
        assert abs(f - e) <= rel * max(abs(e), 1e-12), (found, expected)


def random_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    masks = {n: (torch.rand(p.shape, generator=g) > 0.35).to(torch.uint8)
             for n, p in model.named_parameters() if n.endswith("weight")}
    masks["0.weight"][1] = 0  # an entirely pruned filter
    return masks


def test_matches_exact_hessian_top3():
    model, batches = tiny_model(), tiny_batches()
    h = exact_hessian(model, batches, ["0.weight", "2.weight"])
    found = top_eigenvalues(model, LOSS, batches, k=3, iters=3000, tol=1e-12)
    assert_close(found, top_exact(h, 3))
    assert found == sorted(found, reverse=True)


def test_default_settings_get_the_top_eigenvalue():
    model, batches = tiny_model(), tiny_batches()
    h = exact_hessian(model, batches, ["0.weight", "2.weight"])
    assert_close(top_eigenvalues(model, LOSS, batches, k=1), top_exact(h, 1), rel=1e-2)


def test_include_bias_adds_bias_coordinates():
    model, batches = tiny_model(), tiny_batches()
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    h = exact_hessian(model, batches, names)
    found = top_eigenvalues(model, LOSS, batches, k=3, iters=3000, tol=1e-12, include_bias=True)
    assert_close(found, top_exact(h, 3))


def test_masked_equals_submatrix_of_kept_coordinates():
    model, batches = tiny_model(), tiny_batches()
    masks = random_masks(model)
    names = ["0.weight", "2.weight"]
    h = exact_hessian(model, batches, names, masks)
    keep = torch.cat([masks[n].reshape(-1) for n in names]).bool()
    found = top_eigenvalues(model, LOSS, batches, k=3, masks=masks, iters=3000, tol=1e-12)
    assert_close(found, top_exact(h, 3, keep))
    # and it is not simply the unmasked spectrum
    full = top_exact(exact_hessian(model, batches, names), 3)
    assert any(abs(f - e) > 1e-3 * abs(e) for f, e in zip(found, full))


def test_pruned_model_uses_weight_orig_and_weight_mask():
    plain, batches = tiny_model(), tiny_batches()
    masks = random_masks(plain)
    pruned = copy.deepcopy(plain)
    for name, module in pruned.named_children():
        if isinstance(module, nn.Linear):
            prune.custom_from_mask(module, "weight", masks[f"{name}.weight"].double())
    kwargs = dict(k=3, iters=3000, tol=1e-12)
    expected = top_eigenvalues(plain, LOSS, batches, masks=masks, **kwargs)
    assert_close(top_eigenvalues(pruned, LOSS, batches, **kwargs), expected, rel=1e-9)
    # a mask passed to an already pruned model is multiplied into its own
    extra = {"2.weight": torch.zeros(2, 3, dtype=torch.uint8)}
    extra["2.weight"][0, 0] = 1
    both = {**masks, "2.weight": masks["2.weight"] * extra["2.weight"]}
    assert_close(top_eigenvalues(pruned, LOSS, batches, masks=extra, **kwargs),
                 top_eigenvalues(plain, LOSS, batches, masks=both, **kwargs), rel=1e-9)


def test_batchnorm_and_dropout_in_eval_mode_and_modes_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 2)).double()
    batches = tiny_batches()
    with torch.no_grad():  # give BN non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train()
    model[4].eval()  # a mixed state must come back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    in_train = top_eigenvalues(model, LOSS, batches, k=2, iters=500, tol=1e-10)
    assert model.training and model[1].training and not model[4].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # running stats not updated, weights untouched
    eval_copy = copy.deepcopy(model).eval()
    assert in_train == top_eigenvalues(eval_copy, LOSS, batches, k=2, iters=500, tol=1e-10)
    h = exact_hessian(eval_copy, batches, ["0.weight", "4.weight"])
    assert_close(in_train, top_exact(h, 2))


def _symmetric(eigs: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("eigs,k,expected", [
    ([3.0, 1.0, -5.0, 0.5, -0.2, 0.1], 3, [3.0, 1.0, 0.5]),  # dominant magnitude is negative
    ([-1.0, -2.0, -3.0, -4.0], 2, [-1.0, -2.0]),  # all negative: largest algebraic is -1
    ([2.0, -2.5, 1.5, 0.2], 2, [2.0, 1.5]),
])
def test_power_top_k_returns_largest_algebraic(eigs, k, expected):
    a = _symmetric(eigs)
    g = torch.Generator().manual_seed(3)
    values, vectors = power_top_k(lambda v: [a @ v[0]], lambda: [torch.randn(len(eigs), generator=g,
                                                                            dtype=torch.float64)],
                                  k, iters=5000, tol=1e-14)
    assert_close(values, expected, rel=1e-6)
    for lam, (v,) in zip(values, vectors):
        assert torch.allclose(a @ v, lam * v, atol=1e-5)


def test_errors_are_user_errors():
    model, batches = tiny_model(), tiny_batches()
    with pytest.raises(MaskError):
        top_eigenvalues(model, LOSS, batches, k=1, masks={"nope.weight": torch.ones(1)})
    with pytest.raises(MaskError):
        top_eigenvalues(model, LOSS, batches, k=1, masks={"0.weight": torch.ones(4, 3)})
    zero = {n: torch.zeros_like(p, dtype=torch.uint8) for n, p in model.named_parameters() if n.endswith("weight")}
    zero["2.weight"][0, 0] = 1
    with pytest.raises(ConfigError):
        top_eigenvalues(model, LOSS, batches, k=2, masks=zero)
    with pytest.raises(ConfigError):
        top_eigenvalues(model, LOSS, batches, k=0)
