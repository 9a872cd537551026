"""Exact Lasso (scikit-learn's objective) by FISTA, for comparison with the paper's solver.

Minimises (1/(2n))·||y − Xγ||² + α·||γ||₁ without intercept, to a relative duality gap
<= tol. Method-facts §2: this does *not* give the paper's masks; with d ≫ n it keeps at most
n weights per layer. It exists to measure that difference.

Scaling: recorded features are (Δθ)² ~ 1e-16..1e-10 and can be far smaller late in training;
at 1e-20 the products in XᵀX (~1e-40) fall below float32's smallest normal number (1.2e-38)
and lose their precision, and the step 1/L overflows soon after. We solve the equivalent problem with X' = X/c, y' = y/b (c = max|X|, b = max|y|) and
α' = α/(b·c); its solution w maps back to γ = w·b/c. The objective is only multiplied by b²,
so the relative gap, and hence the stopping rule, are unchanged.

Precision: the iterations run in float64 by default (a float64 copy of X). In float32 the
residual y − Xγ cancels once the fit is good, so the relative gap stalls near
1e-5·||y||/||y − Xγ||; ask for float32 (``compute_dtype``) only for matrices too big to copy.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..errors import ConfigError, DataError

__all__ = ["solve_exact"]

_CHECK_EVERY = 10  # duality-gap checks cost two extra mat-vecs


def _soft(v: torch.Tensor, thr: float) -> torch.Tensor:
    return torch.sign(v) * (v.abs() - thr).clamp_min(0)


def _lipschitz(X: torch.Tensor, n: int, iters: int = 300) -> float:
    """Largest eigenvalue of XᵀX/n by power iteration (Rayleigh quotient converges from below),
    with a 2% margin so that 1/L is a safe FISTA step."""
    gen = torch.Generator(device=X.device).manual_seed(0)
    v = torch.randn(X.shape[1], generator=gen, device=X.device, dtype=X.dtype)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        w = X.T @ (X @ v)
        new = float(torch.dot(v.double(), w.double()))
        norm = w.norm()
        if norm == 0:
            return 1.0
        v = w / norm
        if abs(new - lam) <= 1e-9 * new:
            lam = new
            break
        lam = new
    return 1.02 * lam / n


def _rel_gap(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam_n: float) -> float:
    """Relative duality gap of ½||y−Xw||² + lam_n·||w||₁ (the objective times n).

    Dual point ν = R·min(1, lam_n/||XᵀR||∞) (feasible: ||Xᵀν||∞ <= lam_n); gap = P − D with
    D(ν) = ν·y − ½||ν||². Reductions are accumulated in float64.
    """
    R = y - X @ w
    corr = float((X.T @ R).abs().max()) if R.numel() else 0.0
    s = 1.0 if corr <= lam_n else lam_n / corr
    R64, y64 = R.double(), y.double()
    primal = 0.5 * float(R64 @ R64) + lam_n * float(w.double().abs().sum())
    dual = s * float(R64 @ y64) - 0.5 * s * s * float(R64 @ R64)
    return (primal - dual) / primal if primal > 0 else 0.0


def _check_inputs(X: torch.Tensor, y: torch.Tensor, alpha: float, tol: float, max_iter: int) -> None:
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        raise DataError("solve_exact needs X as a 2-D floating-point tensor (samples x features)")
    if not isinstance(y, torch.Tensor) or y.shape != (X.shape[0],):
        raise DataError(f"y must have shape ({X.shape[0]},) to match X, got {tuple(getattr(y, 'shape', ()))}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (tol > 0 and max_iter >= 1):
        raise ConfigError(f"need tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    if not (bool(torch.isfinite(X).all()) and bool(torch.isfinite(y).all())):
        raise DataError("X or y contains NaN or inf; re-record the data")


def solve_exact(X: torch.Tensor, y: torch.Tensor, alpha: float, *, tol: float = 1e-6,
                max_iter: int = 10000, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Exact Lasso γ (d,) of (1/(2n))||y − Xγ||² + α||γ||₁ (sklearn's ``Lasso(fit_intercept=False)``).

    FISTA with adaptive restart on X's device, in ``compute_dtype``, on the rescaled problem
    described in the module docstring. Returns float64 for float64 X, else float32. Warns if
    ``max_iter`` is reached before the relative duality gap falls to ``tol``.
    """
    _check_inputs(X, y, alpha, tol, max_iter)
    if compute_dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")
    n, d = X.shape
    dtype = compute_dtype
    out_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    out_zero = torch.zeros(d, dtype=out_dtype, device=X.device)
    c = float(X.abs().max()) if X.numel() else 0.0
    b = float(y.abs().max()) if y.numel() else 0.0
    if c == 0.0 or b == 0.0:
        return out_zero  # no signal or no features: γ = 0 is optimal
    Xs = X.to(dtype) / c
    ys = (y.to(device=X.device, dtype=torch.float64) / b).to(dtype)
    lam = alpha / (b * c)
    step = 1.0 / _lipschitz(Xs, n)
    w = torch.zeros(d, dtype=dtype, device=X.device)
    v, t = w.clone(), 1.0
    for it in range(1, max_iter + 1):
        grad = Xs.T @ (Xs @ v - ys) / n
        w_new = _soft(v - step * grad, step * lam)
        # gradient-based adaptive restart (O'Donoghue & Candès 2015): drop momentum when it points uphill
        if float(torch.dot((v - w_new).double(), (w_new - w).double())) > 0:
            t = 1.0
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        v = w_new + ((t - 1.0) / t_new) * (w_new - w)
        w, t = w_new, t_new
        if it % _CHECK_EVERY == 0 and _rel_gap(Xs, ys, w, n * lam) <= tol:
            break
    else:
        gap = _rel_gap(Xs, ys, w, n * lam)
        if gap > tol:
            warnings.warn(f"solve_exact stopped at max_iter={max_iter} with relative duality gap {gap:.2e} > "
                          f"tol={tol:.0e}; raise max_iter or tol", RuntimeWarning, stacklevel=2)
    return (w.double() * (b / c)).to(out_dtype)
