"""When the reference Lasso's coordinates decouple exactly (docs/method.md §2, "What the solver
computes in practice").

Coordinates interact only through the residual of each step, r = fl32(γ·x_i − y_i): the dot
product is summed in float64 and rounded once to float32 before the update. If |γ·x_i| is
smaller than the distance from y_i to the edge of the interval that rounds to fl32(y_i), then
r = −fl32(y_i) *exactly*, whatever γ is, and every coordinate's trajectory depends on its own
column of X alone. With G_t = max_k |γ_k| after step t and S_i = Σ_k |x_{i,k}|, the step t+1
that visits sample i is exact if G_t·S_i is below that distance; for float32 y_i the distance
is at least ulp32(y_i)/4 (a quarter: below a power of two the spacing halves).

This module holds the check only (numpy, on the per-step maxima and per-sample sums that the
coordinate-parallel kernels report); the kernels live in coord_cpu.py and coord_triton.py.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SLACK", "rounding_margins", "first_coupled_step"]

# Relative slack on both sides of the test: the kernels' sums of |x| carry relative errors below
# 1e-6 (float32 lanes of at most 64 terms, then float64), the coupled solver's float64 dot
# product at most d·2^-53 (< 1e-8 for d < 1e8), and a dot product that lands within float64
# rounding of an interval's edge must not count as inside.
SLACK = 1e-5


def rounding_margins(y: np.ndarray) -> np.ndarray:
    """Per sample, the float64 distance from y_i to the nearer edge of the interval of values
    that round (to nearest, ties to even) to fl32(y_i); 0 where y_i sits on an edge. Both edges
    are midpoints between neighbouring float32 values, exact in float64."""
    y = np.asarray(y, dtype=np.float64)
    y32 = y.astype(np.float32)
    up = np.nextafter(y32, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(y32, np.float32(-np.inf)).astype(np.float64)
    mid = y32.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = (mid + up) / 2  # inf at the top of the range: no edge there
        lo = (mid + down) / 2
        return np.minimum(hi - y, y - lo)


def first_coupled_step(order: np.ndarray, gmax: np.ndarray, row_abs_sums: np.ndarray,
                       margins: np.ndarray) -> int:
    """The first step t of ``order`` whose residual the decoupled run may have got wrong, or
    ``len(order)`` if none.

    ``gmax[t]`` bounds max_k |γ_k| after step t (NaN if γ is not finite), ``row_abs_sums[i]``
    is S_i, ``margins`` come from :func:`rounding_margins`. Step 0 is always exact: γ starts at
    zero, so its dot product is exactly 0. A γ that is exactly zero everywhere contributes
    exactly 0 too, whatever the features, unless they are not finite (0·inf is NaN in the
    coupled solver's dot product), so S must be finite.
    """
    n_steps = len(order)
    if n_steps <= 1:
        return n_steps
    i = order[1:]
    g = gmax[:-1].astype(np.float64)
    s = row_abs_sums[i]
    with np.errstate(invalid="ignore", over="ignore"):
        bound = g * s * (1 + SLACK)
        ok = np.isfinite(s) & ((g == 0) | (bound < margins[i] * (1 - SLACK)))
    bad = np.flatnonzero(~ok)
    return int(bad[0]) + 1 if bad.size else n_steps
