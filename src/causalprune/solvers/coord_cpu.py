"""CPU path of the reference Lasso when its coordinates decouple: parallel over tiles of coordinates.

In the paper's regime (x ≈ 1e-12, |y| ≈ 1e-2) the residual of every step rounds to −fl32(y_i)
exactly (decoupling.py), so coordinate k's trajectory over all 3·T visits depends only on its
own column. Each tile of TILE coordinates then runs every step on its own: γ and q of the tile
stay in L1/L2, each step reads one contiguous piece of one row of X, and there is no dot
product, no per-step reduction across tiles and no barrier. X is read once per epoch.

The kernel also gathers what the exactness check needs, at the price of a few element-wise
operations (a reduction inside the vectorised loop would need fastmath, which would change
the update's rounding):

* fast mode: per coordinate the largest |γ_k| over all visits (an element-wise max), so that
  G = max over coordinates and visits bounds |γ| at every step; and per tile and sample Σ|x|
  in float32 lanes during the first epoch (each epoch visits every sample once; a lane adds at
  most TILE/LANES terms, so its relative rounding error is below 1e-6, inside decoupling.SLACK);
* traced mode, only where the global bound fails: per tile and step max |γ| after the step (as
  float32 bits: for non-negative floats the integer order is the numeric order, and NaN's bits
  are the largest, so a NaN fails the check), which locates the first step t* that may couple.

:func:`solve_coordinate` runs the fast mode and checks; where the check fails it traces, reruns
the tiles up to t* (exact there) and hands (γ, q) to the coupled kernel (fused_cpu.py) from t*:
the result is the coupled solver's bit for bit in every case. The element-wise update is
kernels.coord_update, shared with the coupled kernel, on the same float32 operands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import njit, prange

from .blocks import FeatureBlock
from .decoupling import first_coupled_step, rounding_margins
from .fused_cpu import pack_blocks, solve_fused
from .kernels import CROSS, LANES, LINEAR, coord_update, widen

__all__ = ["TILE", "CoordRun", "solve_coordinate", "tile_table"]

# Coordinates per tile: γ, q, the running max and the bf16 scratch (64 KB) stay in L1/L2, and a
# layer of 25,000 weights still makes several tiles for the threads to share.
TILE = 16 * LANES
_ONE = np.float32(1.0)
_ABS = np.uint32(0x7FFFFFFF)


@dataclass(frozen=True)
class CoordRun:
    """What :func:`solve_coordinate` did: ``exact_steps`` of ``steps`` ran decoupled; the
    coupled kernel ran the rest (``coupled_steps``); ``traced``: the global bound failed and
    the per-step trace located the first step that may couple."""

    steps: int
    exact_steps: int
    traced: bool = False

    @property
    def coupled_steps(self) -> int:
        return self.steps - self.exact_steps

    @property
    def fell_back(self) -> bool:
        return self.exact_steps < self.steps


@njit(cache=True)
def _visit(a, b, g, q, h, mult, sc, r, eta, u, clip):
    """One step for a tile's coordinates (features sc·a·(b or 1), float32): update γ and q, and
    raise the running max |γ_k| in ``h``."""
    for k in range(g.shape[0]):
        x = sc * (a[k] * (b[k] if mult else _ONE))
        gn, qn = coord_update(g[k], q[k], x, r, eta, u, clip)
        g[k] = gn
        q[k] = qn
        v = abs(gn)
        h[k] = v if v > h[k] else h[k]


@njit(cache=True)
def _visit_traced(a, b, g, q, gb, mult, sc, r, eta, u, clip):
    """One step as :func:`_visit`; returns max |γ| after the step as float32 bits."""
    for k in range(g.shape[0]):
        x = sc * (a[k] * (b[k] if mult else _ONE))
        gn, qn = coord_update(g[k], q[k], x, r, eta, u, clip)
        g[k] = gn
        q[k] = qn
    mx = np.uint32(0)
    for k in range(g.shape[0]):
        v = gb[k] & _ABS
        mx = v if v > mx else mx
    return mx


@njit(cache=True)
def _abs_sum(a, b, mult, sc, lanes):
    """Σ|x| over a row piece: float32 lanes of at most TILE/LANES terms each, then float64."""
    lanes[:] = 0.0
    for s in range(0, a.shape[0], LANES):
        e = min(s + LANES, a.shape[0])
        aa, bb, ll = a[s:e], b[s:e], lanes[:e - s]
        for k in range(aa.shape[0]):
            ll[k] += abs(sc * (aa[k] * (bb[k] if mult else _ONE)))
    tot = 0.0
    for k in range(LANES):
        tot += np.float64(lanes[k])
    return tot


@njit(cache=True)
def _step(a, b, g, q, gb, h, lanes, mult, sc, r, eta, u, clip, first, traced):
    """One step of one tile in either mode: (traced max bits or 0, Σ|x| in the first epoch or 0)."""
    if traced:
        return _visit_traced(a, b, g, q, gb, mult, sc, r, eta, u, clip), 0.0
    _visit(a, b, g, q, h, mult, sc, r, eta, u, clip)
    return np.uint32(0), (_abs_sum(a, b, mult, sc, lanes) if first else 0.0)


@njit(cache=True)
def _tile(data, wide, bshift, mult, scale, row0, sd, lo, hi, gamma, q, h, order, r32, eta32, u32, clip, t_stop,
          n_first, traced, gbits, ssum):
    """Coordinates [lo, hi) of one block (``gamma``/``q``/``h`` its slices) for steps
    0..t_stop-1 with the decoupled residuals ``r32``. Fast mode: raises ``h`` and, for
    t < n_first, fills ``ssum[order[t]]`` (Σ|x| over the tile); traced: fills ``gbits[t]``.
    A whole tile is one call per step (bfloat16 widened into a tile-sized scratch first): per
    call slicing and alias checks cost more than the update when done per LANES coordinates."""
    m = hi - lo
    scratch = np.empty((2, m if wide else 0), np.uint32)
    sf = scratch.view(np.float32)
    lanes = np.zeros(LANES, np.float32)
    g, qq, hh = gamma[lo:hi], q[lo:hi], h[lo:hi]
    gb = g.view(np.uint32)
    sc, clip = np.float32(scale), np.float32(clip)
    for t in range(t_stop):
        i = order[t]
        a0 = (row0 + i) * sd
        r, eta, u = r32[t], eta32[t], u32[t]
        first = t < n_first and not traced
        if wide:
            widen(data[a0 + lo:a0 + hi], scratch[0])
            if bshift != 0:
                widen(data[a0 + bshift + lo:a0 + bshift + hi], scratch[1])
            mx, tot = _step(sf[0], sf[1 if bshift != 0 else 0], g, qq, gb, hh, lanes, mult, sc, r, eta, u, clip,
                            first, traced)
        else:
            mx, tot = _step(data[a0 + lo:a0 + hi], data[a0 + bshift + lo:a0 + bshift + hi], g, qq, gb, hh, lanes,
                            mult, sc, r, eta, u, clip, first, traced)
        if traced:
            gbits[t] = mx
        if first:
            ssum[i] = tot


@njit(parallel=True, cache=True)
def _run_tiles(f32s, bf16s, meta, scales, tiles, order, r32, eta32, u32, clip, t_stop, n_first, gamma, q, h,
               traced, gbits, ssum):
    """Every tile over steps 0..t_stop-1, in parallel; tiles[c] = (block, lo, hi)."""
    for c in prange(tiles.shape[0]):
        b, lo, hi = tiles[c, 0], tiles[c, 1], tiles[c, 2]
        st, li, kind, row0 = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3]
        off, sd, d = meta[b, 4], meta[b, 5], meta[b, 6]
        bshift = sd if kind == CROSS else 0  # second factor: the next row
        mult = kind != LINEAR
        gs, qs, hs = gamma[off:off + d], q[off:off + d], h[off:off + d]
        if st == 0:
            _tile(f32s[li], False, bshift, mult, scales[b], row0, sd, lo, hi, gs, qs, hs, order, r32, eta32, u32,
                  clip, t_stop, n_first, traced, gbits[c], ssum[c])
        else:
            _tile(bf16s[li], True, bshift, mult, scales[b], row0, sd, lo, hi, gs, qs, hs, order, r32, eta32, u32,
                  clip, t_stop, n_first, traced, gbits[c], ssum[c])


def tile_table(dims: list[int], tile: int = TILE) -> np.ndarray:
    """(block, lo, hi) tiles covering every block, block-major."""
    rows = [(b, lo, min(lo + tile, d)) for b, d in enumerate(dims) for lo in range(0, d, tile)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def solve_coordinate(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                     us: np.ndarray, clip: float, progress: bool = False,
                     tile: int = TILE) -> tuple[list[torch.Tensor], CoordRun]:
    """The reference solver's result for the visit ``order`` (same arguments as
    :func:`fused_cpu.solve_fused`), decoupled where that is exact; returns (γ per block, run)."""
    n = int(y.shape[0])
    n_steps = len(order)
    lists, meta, scales, offs = pack_blocks(blocks)
    tiles = tile_table([b.dim for b in blocks], tile)
    yy = np.ascontiguousarray(y.detach().cpu().double().numpy())
    # Decoupled residuals: fl32(0 − y_i) = −fl32(y_i); η and u rounded to float32 once per
    # step, as the coupled kernel rounds them.
    r32 = (-yy[order]).astype(np.float32)
    eta32, u32 = etas.astype(np.float32), us.astype(np.float32)
    n_first = min(n, n_steps)
    if not np.array_equal(np.sort(order[:n_first]), np.arange(n_first)):
        raise ValueError("the first epoch of the visit order must visit every sample once")
    margins = rounding_margins(yy)

    def run(t_stop: int, traced: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        gamma = np.zeros(int(offs[-1]), np.float32)
        q, h = np.zeros_like(gamma), np.zeros_like(gamma)
        gbits = np.zeros((tiles.shape[0], n_steps if traced else 0), np.uint32)
        ssum = np.zeros((tiles.shape[0], n), np.float64)
        # Tiles are handed out one at a time: on a shared machine a descheduled thread then delays
        # the end by one tile, not by its static share of them.
        with numba.parallel_chunksize(1):
            _run_tiles(*lists, meta, scales, tiles, order, r32, eta32, u32, float(clip), t_stop, n_first, gamma, q,
                       h, traced, gbits, ssum)
        return gamma, q, h, gbits, ssum

    gamma, q, h, _, ssum = run(n_steps, False)
    if not tiles.shape[0]:
        t_star, traced = n_steps, False
    else:
        # G: the largest |γ_k| over all coordinates and visits bounds |γ| after every step
        g_all = float(h.max()) if np.isfinite(gamma).all() else float("nan")
        row_sums = ssum.sum(axis=0)
        t_star = first_coupled_step(order, np.full(n_steps, g_all), row_sums, margins)
        traced = t_star < n_steps
        if traced:  # locate the first step that may couple from the per-step maxima
            _, _, _, gbits, _ = run(n_steps, True)
            t_star = first_coupled_step(order, gbits.max(axis=0).view(np.float32), row_sums, margins)
    if t_star < n_steps:  # the tiles went on with wrong residuals after t*: redo up to t*, then couple
        gamma, q, _, _, _ = run(t_star, False)
        out = solve_fused(blocks, y, order, etas, us, clip, progress=progress, start=(t_star, gamma, q))
        return out, CoordRun(n_steps, t_star, traced)
    gammas = [torch.from_numpy(gamma[offs[k]:offs[k + 1]].copy()) for k in range(len(blocks))]
    return gammas, CoordRun(n_steps, n_steps, traced)
