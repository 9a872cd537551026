"""The exact Lasso (FISTA to a duality gap) against scikit-learn's coordinate descent."""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.linear_model import Lasso

from causalprune.errors import ConfigError, DataError
from causalprune.solvers import SOLVERS, FeatureBlock, solve_exact


def sklearn_lasso(X: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    model = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=200_000)
    model.fit(X.double().numpy(), y.double().numpy())
    return torch.from_numpy(model.coef_)


def planted(seed=0, n=80, d=15, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.zeros(d, dtype=torch.float64)
    w[:4] = torch.tensor([2.0, -1.5, 1.0, 0.5], dtype=torch.float64)
    y = X @ w + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return X * scale, y


def assert_same_solution(got: torch.Tensor, ref: torch.Tensor, rtol: float) -> None:
    assert torch.equal(got != 0, ref != 0), (got, ref)
    assert 0 < int((ref != 0).sum()) < ref.numel(), "the problem must have both zero and nonzero weights"
    assert torch.allclose(got.double(), ref, rtol=rtol, atol=rtol * float(ref.abs().max()) * 1e-3)


def test_matches_sklearn():
    X, y = planted()
    ref = sklearn_lasso(X, y, 0.1)
    got = solve_exact(X, y, 0.1, tol=1e-12, max_iter=50_000)
    assert got.dtype == torch.float64
    assert_same_solution(got, ref, rtol=1e-4)


def test_more_features_than_samples_keeps_at_most_n():
    """Method-facts §2: with d >> n an exact Lasso keeps at most n weights."""
    g = torch.Generator().manual_seed(4)
    X = torch.randn(20, 200, generator=g, dtype=torch.float64)
    y = X[:, :5].sum(1) + 0.1 * torch.randn(20, generator=g, dtype=torch.float64)
    ref = sklearn_lasso(X, y, 0.02)
    got = solve_exact(X, y, 0.02, tol=1e-12, max_iter=100_000)
    assert int((got != 0).sum()) <= 20
    assert torch.allclose(got, ref, atol=1e-4 * float(ref.abs().max()))


def test_tiny_feature_scale_float64():
    """(Δθ)²-sized features: scaling X by c scales the solution by 1/c when α scales by c."""
    c = 1e-14
    X, y = planted(scale=c)
    ref = sklearn_lasso(X, y, 0.1 * c)
    got = solve_exact(X, y, 0.1 * c, tol=1e-12, max_iter=50_000)
    assert_same_solution(got, ref, rtol=1e-4)
    unscaled = solve_exact(X / c, y, 0.1, tol=1e-12, max_iter=50_000)
    assert torch.allclose(got * c, unscaled, rtol=1e-6, atol=1e-12)


def test_tiny_feature_scale_float32_does_not_underflow():
    """In float32, XᵀX of 1e-20 features is subnormal; the internal rescaling must avoid it."""
    c = 1e-20
    X, y = planted(scale=c)
    assert float((X.float().T @ X.float()).abs().max()) < 1.2e-38  # what an unscaled solver would face
    ref = sklearn_lasso(X, y, 0.1 * c)
    got = solve_exact(X.float(), y.float(), 0.1 * c)  # float32 X: gaps below ~1e-7 are out of reach
    assert got.dtype == torch.float32
    assert_same_solution(got, ref, rtol=1e-4)


def test_alpha_above_alpha_max_gives_zero():
    X, y = planted()
    alpha_max = float((X.T @ y).abs().max()) / X.shape[0]
    assert torch.equal(solve_exact(X, y, 1.01 * alpha_max), torch.zeros(15, dtype=torch.float64))
    assert (solve_exact(X, y, 0.9 * alpha_max) != 0).any()


def test_warns_when_it_runs_out_of_iterations():
    X, y = planted()
    with pytest.warns(RuntimeWarning, match="max_iter"):
        solve_exact(X, y, 0.01, tol=1e-14, max_iter=3)


def test_recorded_like_features_converge_to_at_most_n_weights():
    """Non-negative squared features with column norms over ten decades, α = 1e-3·α_max:
    the case that stalled plain FISTA. The working set reaches the gap and keeps <= n."""
    g = torch.Generator().manual_seed(7)
    n, d = 7, 30_000
    X = (torch.randn(n, d, generator=g, dtype=torch.float64) * 10 ** torch.empty(d, dtype=torch.float64).uniform_(
        -13, -3, generator=g)) ** 2
    y = 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    alpha = 1e-3 * float((X.T @ y).abs().max()) / n
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # it must reach tol, not stop at max_iter
        got = solve_exact(X.float(), y.float(), alpha)
    assert 1 <= int((got != 0).sum()) <= n
    ref = sklearn_lasso(X, y, alpha)
    assert torch.allclose(got.double(), ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))


def test_rejects_bad_inputs():
    X, y = planted()
    with pytest.raises(DataError):
        solve_exact(X, y[:-1], 0.1)
    with pytest.raises(ConfigError):
        solve_exact(X, y, -0.1)
    with pytest.raises(DataError):
        solve_exact(X * float("nan"), y, 0.1)


def test_registry_entry_splits_blocks():
    X, y = planted()
    whole = solve_exact(X, y, 0.1, tol=1e-10, max_iter=50_000)
    parts = SOLVERS["exact"]([FeatureBlock(X[:, :6]), FeatureBlock(X[:, 6:])], y, 0.1, tol=1e-10, max_iter=50_000)
    assert [p.shape[0] for p in parts] == [6, 9]
    assert torch.allclose(torch.cat(parts).double(), whole, rtol=1e-5, atol=1e-7)
