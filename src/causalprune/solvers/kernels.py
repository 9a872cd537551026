"""Numba building blocks of the cumulative-penalty Lasso SGD on CPU (docs/method.md §2).

Layout (why it is fast *and* deterministic): a block's coordinates are cut into CHUNK-sized
work units that threads share; inside a unit, coordinate p goes to lane p % LANES of a
float64 accumulator, rows of LANES coordinates in order, and the lanes are then summed in
order. The loop over a row is elementwise (no reduction) and branch-free (selects only), so
LLVM vectorises it without fastmath, and every sum has a fixed order: results do not depend
on the thread count, and the batch and streaming solvers agree bit for bit.

The feature rule is branch-free too: x = scale·(a·m) with a = data[row] and m =
data[row+1] ("cross"), a ("square") or 1 ("linear"); a·1 == a exactly.

bfloat16 is read in place: the tensor is viewed as uint16 and each row of LANES values is
widened into a 4 KB scratch (bf16 bits are the top half of float32: uint32(u16) << 16);
the matrix is never copied to float32.

Numerics (shared with torch_path.py): data, features and the elementwise update are float32
(γ and q are stored in float32 anyway, and their rounding, not the arithmetic's, bounds the
error); the schedule η_s, u_s is accumulated in float64 and rounded to float32 once per
step; r and the dot products accumulate in float64 (float32·float32 products are exact
there). float64 / float16 data is rounded to float32 first.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from .blocks import KINDS

__all__ = [
    "LANES", "CHUNK", "LINEAR", "CROSS", "as_numba_array", "coord_update", "update_unit", "dot_unit", "widen",
]

LANES = 256  # accumulator lanes = elements per vectorised row
CHUNK = 64 * LANES  # coordinates per work unit (64 KB of float32 state): balances 2+ cores
LINEAR, CROSS = KINDS.index("linear"), KINDS.index("cross")
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@njit(inline="always")
def coord_update(gk, qk, xv, r, eta, u, clip):
    """One coordinate of the cumulative-penalty update (docs/method.md §2), all float32;
    returns new (γ, q). Selects only (no branches), so the row loop vectorises."""
    g = r * xv
    g = clip if g > clip else g
    g = -clip if g < -clip else g
    z = gk - eta * g
    a = z - (u + qk)  # z > 0: pull down by the penalty not yet received, stop at 0
    a = a if a > _ZERO else _ZERO
    b = z + (u - qk)  # z < 0: pull up, stop at 0
    b = b if b < _ZERO else _ZERO
    gn = a if z > _ZERO else (b if z < _ZERO else z)
    return gn, qk + (gn - z)


@njit(cache=True)
def _row(a, b, an, bn, g, q, acc, mult, sc, r, eta, u, clip):
    """Update one row of coordinates with features sc·a·(b or 1) and add the new γ times
    the next sample's features into the lanes of ``acc``. Scalars are float32."""
    for k in range(g.shape[0]):
        x = sc * (a[k] * (b[k] if mult else _ONE))
        gn, qn = coord_update(g[k], q[k], x, r, eta, u, clip)
        g[k] = gn
        q[k] = qn
        acc[k] += np.float64(gn) * np.float64(sc * (an[k] * (bn[k] if mult else _ONE)))


@njit(cache=True)
def widen(src, dst):
    """bfloat16 bits (uint16) -> float32 bits (uint32) in ``dst`` (integer ops: vectorised)."""
    for k in range(src.shape[0]):
        dst[k] = np.uint32(src[k]) << np.uint32(16)


@njit(cache=True)
def update_unit(data, wide, bshift, mult, scale, a0, n0, lo, hi, gamma, q, acc, r, eta, u, clip):
    """Coordinates [lo, hi) of one block (``gamma``/``q`` are the block's slices) for the sample
    whose row starts at flat index ``a0`` of ``data`` (next sample: ``n0``); the second factor's
    row is ``bshift`` further on. ``wide``: data holds bfloat16 bits. Returns the unit's
    partial dot with the next sample."""
    acc[:] = 0.0
    scratch = np.empty((4, LANES if wide else 0), np.uint32)
    sf = scratch.view(np.float32)
    sc, r, eta, u, clip = np.float32(scale), np.float32(r), np.float32(eta), np.float32(u), np.float32(clip)
    for s in range(lo, hi, LANES):
        e = min(s + LANES, hi)
        m = e - s
        g, qq, ac = gamma[s:e], q[s:e], acc[:m]
        if wide:
            widen(data[a0 + s:a0 + e], scratch[0])
            widen(data[n0 + s:n0 + e], scratch[2])
            if bshift == 0:  # second factor is the same row: widen once
                _row(sf[0, :m], sf[0, :m], sf[2, :m], sf[2, :m], g, qq, ac, mult, sc, r, eta, u, clip)
            else:
                widen(data[a0 + bshift + s:a0 + bshift + e], scratch[1])
                widen(data[n0 + bshift + s:n0 + bshift + e], scratch[3])
                _row(sf[0, :m], sf[1, :m], sf[2, :m], sf[3, :m], g, qq, ac, mult, sc, r, eta, u, clip)
        else:
            _row(data[a0 + s:a0 + e], data[a0 + bshift + s:a0 + bshift + e], data[n0 + s:n0 + e],
                 data[n0 + bshift + s:n0 + bshift + e], g, qq, ac, mult, sc, r, eta, u, clip)
    tot = 0.0
    for k in range(LANES):  # fixed order
        tot += acc[k]
    return tot


@njit(cache=True)
def _dot_row(an, bn, g, acc, mult, sc):
    for k in range(g.shape[0]):
        acc[k] += np.float64(g[k]) * np.float64(sc * (an[k] * (bn[k] if mult else _ONE)))


@njit(cache=True)
def dot_unit(data, wide, bshift, mult, scale, n0, lo, hi, gamma, acc):
    """Coordinates [lo, hi) of γ·x for the sample whose row starts at ``n0``, in exactly the
    lanes and order in which :func:`update_unit` accumulates its "next sample" dot product,
    so a run resumed from a saved (γ, q) continues bit for bit."""
    acc[:] = 0.0
    scratch = np.empty((2, LANES if wide else 0), np.uint32)
    sf = scratch.view(np.float32)
    sc = np.float32(scale)
    for s in range(lo, hi, LANES):
        e = min(s + LANES, hi)
        m = e - s
        g, ac = gamma[s:e], acc[:m]
        if wide:
            widen(data[n0 + s:n0 + e], scratch[0])
            if bshift != 0:
                widen(data[n0 + bshift + s:n0 + bshift + e], scratch[1])
            _dot_row(sf[0, :m], sf[1 if bshift != 0 else 0, :m], g, ac, mult, sc)
        else:
            _dot_row(data[n0 + s:n0 + e], data[n0 + bshift + s:n0 + bshift + e], g, ac, mult, sc)
    tot = 0.0
    for k in range(LANES):  # fixed order
        tot += acc[k]
    return tot


def as_numba_array(t: torch.Tensor) -> tuple[np.ndarray, int]:
    """(flat, row_stride): a zero-copy 1-D numpy view covering a 2-D CPU tensor whose rows
    are contiguous, element (r, j) at ``flat[r*row_stride + j]``. Column slices of a bigger
    recording are therefore read in place. float32 stays as it is, bfloat16 becomes its
    uint16 bits; other dtypes (and a tensor with strided columns) are copied to float32."""
    t = t.detach()
    if t.dtype not in (torch.float32, torch.bfloat16):
        t = t.float()
    if t.shape[1] > 1 and t.stride(1) != 1:
        t = t.contiguous()
    rows, d = t.shape
    stride = int(t.stride(0)) if rows > 1 else d
    span = (rows - 1) * stride + d if rows and d else 0
    flat = t.as_strided((span,), (1,), t.storage_offset())
    if flat.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16), stride
    return flat.numpy(), stride
