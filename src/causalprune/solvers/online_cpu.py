"""CPU kernels of the streaming solver (OnlineLasso): one sample's dot product, then its update.

They reuse the batch kernel's work units and lane order (kernels.py), so feeding samples one
by one reproduces ``solve_reference(shuffle=False, epochs=1)`` bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import CHUNK, LANES, update_unit, widen

__all__ = ["dot_acc", "update_block"]


@njit(cache=True)
def _dot_unit(x, wide, lo, hi, gamma, acc):
    """Partial γ·x over [lo, hi) with the lane layout and order of :func:`kernels.update_unit`."""
    acc[:] = 0.0
    scratch = np.empty(LANES if wide else 0, np.uint32)
    sf = scratch.view(np.float32)
    for s in range(lo, hi, LANES):
        e = min(s + LANES, hi)
        g, ac = gamma[s:e], acc[:e - s]
        if wide:
            widen(x[s:e], scratch)
            xs = sf[:e - s]
            for k in range(g.shape[0]):
                ac[k] += np.float64(g[k]) * np.float64(xs[k])
        else:
            xs2 = x[s:e]
            for k in range(g.shape[0]):
                ac[k] += np.float64(g[k]) * np.float64(np.float32(xs2[k]))
    tot = 0.0
    for k in range(LANES):
        tot += acc[k]
    return tot


@njit(parallel=True, cache=True)
def _dot_units(x, wide, gamma, part, acc):
    d = gamma.shape[0]
    for c in prange(part.shape[0]):
        part[c] = _dot_unit(x, wide, c * CHUNK, min((c + 1) * CHUNK, d), gamma, acc[c])
    tot = 0.0
    for c in range(part.shape[0]):
        tot += part[c]
    return tot


def dot_acc(acc: float, gamma: np.ndarray, x: np.ndarray) -> float:
    """acc + γ·x, summed unit by unit in the fused kernel's order (so the streaming solver
    reproduces it bit for bit). x is (d,) float32 or uint16 (bfloat16 bits)."""
    n_units = (gamma.shape[0] + CHUNK - 1) // CHUNK
    part = np.zeros(n_units, np.float64)
    lanes = np.zeros((n_units, LANES), np.float64)
    _dot_units(x, x.dtype == np.uint16, gamma, part, lanes)
    for p in part:  # sequential, like the kernel (np.sum would sum pairwise)
        acc += float(p)
    return acc


@njit(parallel=True, cache=True)
def _update_units(x, wide, gamma, q, r, eta, u, clip, acc):
    d = gamma.shape[0]
    for c in prange(acc.shape[0]):
        update_unit(x, wide, 0, False, 1.0, 0, 0, c * CHUNK, min((c + 1) * CHUNK, d), gamma, q, acc[c], r, eta, u, clip)


def update_block(x: np.ndarray, gamma: np.ndarray, q: np.ndarray, r: float, eta: float, u: float, clip: float) -> None:
    """In place: the cumulative-penalty update of one block with residual ``r`` (features x, scale 1)."""
    n_units = (gamma.shape[0] + CHUNK - 1) // CHUNK
    lanes = np.zeros((n_units, LANES), np.float64)
    _update_units(x, x.dtype == np.uint16, gamma, q, float(r), float(eta), float(u), float(clip), lanes)
