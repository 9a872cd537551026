"""Exact Lasso (scikit-learn's objective), for comparison with the paper's solver.

Minimises (1/(2n))·||y − Xγ||² + α·||γ||₁ without intercept, to a relative duality gap
<= tol. Method-facts §2: this does *not* give the paper's masks; with d ≫ n it keeps at most
n weights per layer. It exists to measure that difference.

Algorithm: coordinate descent on a working set. Recorded features are non-negative squares
whose column norms span many orders of magnitude, so gradient methods over all d columns
barely move (measured with FISTA: relative gap 2e-2 after 10,000 iterations at n = 7,
d = 30,000). Coordinate descent takes a step of 1/||x_j||² per column, which handles the
scales; the working set keeps it small: it solves the problem restricted to a set W of
columns, W grows by the columns that violate the optimality condition |x_jᵀR| <= nα the
most, and we stop when the duality gap of the *full* problem is <= tol. Nearly collinear
columns make coordinate descent zig-zag for thousands of epochs, so after each burst of
epochs a finite descent on the support it found (feature-sign steps: the optimum AₛᵀAₛ·w =
Aₛᵀy − nα·s on the support S with signs s, or the best zero-crossing on the way to it; see
_polish) jumps to the answer. The heavy passes (XᵀR over all columns) run on X's device; the
restricted n×|W| problems run on the CPU (numba and numpy, float64). The solution has at
most n nonzeros whenever the polish ends on a full-rank support.

Scaling: recorded features are (Δθ)² ~ 1e-16..1e-10 and can be far smaller late in training;
at 1e-20 the products in XᵀX (~1e-40) fall below float32's smallest normal number (1.2e-38)
and lose their precision. We solve the equivalent problem with X' = X/c, y' = y/b
(c = max|X|, b = max|y|) and α' = α/(b·c); its solution w maps back to γ = w·b/c. The
objective is only multiplied by b², so the relative gap is unchanged. The rescaled full
matrix keeps X's precision (float32 unless X is float64: no float64 copy of a T×d
recording); the small working-set problems, residuals and gaps are computed in float64.
With float32 X the full-problem gap cannot go much below ~1e-7 (XᵀR is float32).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from numba import njit

from ..errors import ConfigError, DataError

__all__ = ["solve_exact"]

_CHECK_EVERY = 10  # coordinate-descent epochs between duality-gap checks
_BURST = 200  # coordinate-descent epochs per round, between polishing attempts
_MAX_ROUNDS = 10_000  # rounds (each grows the working set or runs one burst)


def _gap(R: torch.Tensor, y: torch.Tensor, corr_max: float, l1: float, lam_n: float) -> float:
    """Relative duality gap of ½||R||² + lam_n·||w||₁ (the objective times n), R = y − Xw.

    Dual point ν = R·min(1, lam_n/||XᵀR||∞) is feasible; gap = P − D, D(ν) = ν·y − ½||ν||².
    """
    s = 1.0 if corr_max <= lam_n else lam_n / corr_max
    rr = float(R @ R)
    primal = 0.5 * rr + lam_n * l1
    dual = s * float(R @ y) - 0.5 * s * s * rr
    return (primal - dual) / primal if primal > 0 else 0.0


@njit(cache=True)
def _residual(AT, y, w):
    R = y.copy()
    for j in range(AT.shape[0]):
        if w[j] != 0.0:
            R -= w[j] * AT[j]
    return R


@njit(cache=True)
def _cd_gap(AT, y, R, w, lam_n):
    corr = 0.0
    for j in range(AT.shape[0]):
        corr = max(corr, abs(np.dot(AT[j], R)))
    s = 1.0 if corr <= lam_n else lam_n / corr
    rr = np.dot(R, R)
    primal = 0.5 * rr + lam_n * np.abs(w).sum()
    dual = s * np.dot(R, y) - 0.5 * s * s * rr
    return (primal - dual) / primal if primal > 0 else 0.0


@njit(cache=True)
def _cd(AT, y, lam_n, w, max_epochs, tol):
    """Cyclic coordinate descent on ½||y − Aw||² + lam_n·||w||₁ (A = ATᵀ, float64), in place
    on ``w``, until the relative duality gap <= tol; returns the epochs used."""
    norms = np.empty(AT.shape[0])
    for j in range(AT.shape[0]):
        norms[j] = np.dot(AT[j], AT[j])
    R = _residual(AT, y, w)
    for ep in range(1, max_epochs + 1):
        for j in range(AT.shape[0]):
            if norms[j] == 0.0:
                continue
            z = w[j] + np.dot(AT[j], R) / norms[j]
            new = np.sign(z) * max(abs(z) - lam_n / norms[j], 0.0)  # exact 1-D minimiser
            if new != w[j]:
                R -= (new - w[j]) * AT[j]
                w[j] = new
        if ep % _CHECK_EVERY == 0 or ep == max_epochs:
            R = _residual(AT, y, w)  # drop the rounding drift of the incremental updates
            if _cd_gap(AT, y, R, w, lam_n) <= tol:
                return ep
    return max_epochs


def _objective(AT: np.ndarray, y: np.ndarray, lam_n: float, w: np.ndarray) -> float:
    R = _residual(AT, y, w)
    return 0.5 * float(R @ R) + lam_n * float(np.abs(w).sum())


def _null_move(AT: np.ndarray, w: np.ndarray, S: np.ndarray, B: np.ndarray, norms: np.ndarray) -> bool:
    """Rank-deficient support: move along a null direction of A_S (the fit is unchanged) in the
    direction that lowers ||w||₁ until a coordinate reaches zero, and drop it. In place."""
    step = np.linalg.svd(B.T, full_matrices=True)[2][-1] / norms
    signs = np.sign(w[S])
    step = -step if signs @ step > 0 else step
    t = np.where(signs * step < 0, -w[S] / np.where(step == 0, 1.0, step), np.inf)
    k = int(np.argmin(t))
    if not np.isfinite(t[k]):
        return False
    w[S] += t[k] * step
    w[S[k]] = 0.0
    return True


def _polish(AT: np.ndarray, y: np.ndarray, lam_n: float, w: np.ndarray) -> np.ndarray:
    """Finite descent on the support of ``w`` (feature-sign search, Lee et al. 2007, started
    from the coordinate-descent iterate); never increases the objective, only removes
    coordinates, and ends at the optimum over the remaining support when it keeps its signs.
    Columns are scaled to unit norm for the linear algebra (their norms span decades)."""
    w = w.copy()
    for _ in range(2 * AT.shape[0] + 2):
        S = np.flatnonzero(w)
        if S.size == 0:
            return w
        norms = np.sqrt((AT[S] ** 2).sum(1))
        B, signs = AT[S] / norms[:, None], np.sign(w[S])
        try:
            if S.size > AT.shape[1]:
                raise np.linalg.LinAlgError
            chol = np.linalg.cholesky(B @ B.T)
        except np.linalg.LinAlgError:
            if not _null_move(AT, w, S, B, norms):
                return w
            continue
        rhs = B @ y - lam_n * signs / norms
        z = np.linalg.solve(chol.T, np.linalg.solve(chol, rhs)) / norms  # optimum on this face
        flips = np.flatnonzero(np.sign(z) != signs)
        if flips.size == 0:
            cand = w.copy()
            cand[S] = z
            return cand if _objective(AT, y, lam_n, cand) <= _objective(AT, y, lam_n, w) else w
        best, best_f = None, _objective(AT, y, lam_n, w)
        for k in flips:  # points on the segment where a coordinate crosses zero
            cand = w.copy()
            cand[S] = w[S] + (w[S[k]] / (w[S[k]] - z[k])) * (z - w[S])
            cand[S[k]] = 0.0
            f = _objective(AT, y, lam_n, cand)
            if f <= best_f:
                best, best_f = cand, f
        if best is None:
            return w
        w = best
    return w


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
                max_iter: int = 10000) -> torch.Tensor:
    """Exact Lasso γ (d,) of (1/(2n))||y − Xγ||² + α||γ||₁ (sklearn's ``Lasso(fit_intercept=False)``).

    Working-set coordinate descent (module docstring), stopping at a relative duality gap
    <= ``tol``; ``max_iter`` bounds the epochs over all rounds (a RuntimeWarning says so if it
    runs out). Returns float64 for float64 X, else float32, on X's device.
    """
    _check_inputs(X, y, alpha, tol, max_iter)
    n, d = X.shape
    out_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    c = float(X.abs().max()) if X.numel() else 0.0
    b = float(y.abs().max()) if y.numel() else 0.0
    if c == 0.0 or b == 0.0:
        return torch.zeros(d, dtype=out_dtype, device=X.device)  # no signal or no features: γ = 0
    Xs = X.to(out_dtype) / c  # full matrix in X's precision; float32 is safe once rescaled
    ys = y.to(device=X.device, dtype=torch.float64) / b
    lam = alpha / (b * c)
    w = torch.zeros(d, dtype=torch.float64, device=X.device)
    work = torch.zeros(0, dtype=torch.long, device=X.device)
    used, inner_tol, gap = 0, 0.1 * tol, math.inf
    # each round: grow W by the worst violators (if any), then one burst of CD on W and a polish
    for _ in range(_MAX_ROUNDS):
        R = ys - Xs[:, work].double() @ w[work]  # w is zero outside the working set
        corr = (Xs.T @ R.to(Xs.dtype)).double().abs()
        gap = _gap(R, ys, float(corr.max()), float(w.abs().sum()), n * lam)
        if gap <= tol or used >= max_iter:
            break
        corr[work] = -1.0
        grow = torch.topk(corr, min(max(10, work.numel()), d)).indices
        grow = grow[corr[grow] > n * lam]  # columns that violate the optimality condition
        work = torch.unique(torch.cat([work, grow]))
        sub = w[work].cpu().numpy().copy()
        AT = np.ascontiguousarray(Xs[:, work].T.double().cpu().numpy())
        y_np = ys.cpu().numpy()
        used += _cd(AT, y_np, n * lam, sub, min(_BURST, max_iter - used), inner_tol)
        sub = _polish(AT, y_np, n * lam, sub)
        w.zero_()
        w[work] = torch.from_numpy(sub).to(X.device)
    if gap > tol:
        warnings.warn(f"solve_exact stopped after {used} coordinate-descent epochs with relative duality gap "
                      f"{gap:.2e} > tol={tol:.0e}; raise max_iter or tol", RuntimeWarning, stacklevel=2)
    return (w * (b / c)).to(out_dtype)
