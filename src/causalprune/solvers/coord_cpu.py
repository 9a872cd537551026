"""CPU path of the reference Lasso when its coordinates decouple: parallel over tiles of coordinates.

In the paper's regime (x ≈ 1e-12, |y| ≈ 1e-2) the residual of every step rounds to −fl32(y_i)
exactly (decoupling.py), so coordinate k's trajectory over all 3·T visits depends only on its
own column. Each tile of TILE coordinates then runs every step on its own: γ and q of the tile
stay in L1/L2, each step reads one contiguous piece of one row of X, and there is no dot
product, no per-step reduction across tiles and no barrier. X is read once per epoch.

The same kernel reports what the exactness check needs: per tile and step, max |γ| after the
step (as float32 bits: for non-negative floats the integer order is the numeric order, and an
integer max vectorises where a float one would not without fastmath; NaN bits are the largest,
so a NaN fails the check); and per tile and sample, Σ|x| over the tile, summed in float64 lanes
during the first epoch (each epoch visits every sample once).

:func:`solve_coordinate` runs it, checks, and where the check fails from some step t* on,
reruns the tiles up to t* (exact there) and hands (γ, q) to the coupled kernel (fused_cpu.py)
from t*: the result is the coupled solver's bit for bit in every case. The element-wise update
is kernels.coord_update, shared with the coupled kernel, on the same float32 operands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from .blocks import FeatureBlock
from .decoupling import first_coupled_step, rounding_margins
from .fused_cpu import pack_blocks, solve_fused
from .kernels import CROSS, LANES, LINEAR, coord_update, widen

__all__ = ["TILE", "CoordRun", "solve_coordinate", "tile_table"]

TILE = 16 * LANES  # coordinates per tile: γ and q (32 KB) stay in L1/L2; one visit reads 8-16 KB of a row
_ONE = np.float32(1.0)
_ABS = np.uint32(0x7FFFFFFF)


@dataclass(frozen=True)
class CoordRun:
    """What :func:`solve_coordinate` did: ``exact_steps`` of ``steps`` ran decoupled; the
    coupled kernel ran the rest (``coupled_steps``)."""

    steps: int
    exact_steps: int

    @property
    def coupled_steps(self) -> int:
        return self.steps - self.exact_steps

    @property
    def fell_back(self) -> bool:
        return self.exact_steps < self.steps


@njit(cache=True)
def _visit(a, b, g, q, gb, acc, mult, sc, r, eta, u, clip, first):
    """One step for LANES coordinates or fewer (features sc·a·(b or 1), float32): update γ and
    q, add |x| into ``acc`` in the first epoch; return max |γ| after the step as bits."""
    for k in range(g.shape[0]):
        x = sc * (a[k] * (b[k] if mult else _ONE))
        gn, qn = coord_update(g[k], q[k], x, r, eta, u, clip)
        g[k] = gn
        q[k] = qn
    if first:
        for k in range(g.shape[0]):
            acc[k] += abs(np.float64(sc * (a[k] * (b[k] if mult else _ONE))))
    mx = np.uint32(0)
    for k in range(g.shape[0]):
        v = gb[k] & _ABS
        mx = v if v > mx else mx
    return mx


@njit(cache=True)
def _tile(data, wide, bshift, mult, scale, row0, sd, lo, hi, gamma, q, order, r32, eta32, u32, clip, t_stop,
          n_first, gbits, ssum):
    """Coordinates [lo, hi) of one block (``gamma``/``q`` its slices) for steps 0..t_stop-1 with
    the decoupled residuals ``r32``; fills ``gbits[t]`` (max |γ| bits after step t) and, for
    t < n_first, ``ssum[order[t]]`` (Σ|x| over the tile)."""
    scratch = np.empty((2, LANES if wide else 0), np.uint32)
    sf = scratch.view(np.float32)
    acc = np.zeros(LANES, np.float64)
    gb = gamma.view(np.uint32)
    sc, clip = np.float32(scale), np.float32(clip)
    for t in range(t_stop):
        i = order[t]
        a0 = (row0 + i) * sd
        r, eta, u = r32[t], eta32[t], u32[t]
        first = t < n_first
        mx = np.uint32(0)
        if first:
            acc[:] = 0.0
        for s in range(lo, hi, LANES):
            e = min(s + LANES, hi)
            m = e - s
            g, qq, gbs, ac = gamma[s:e], q[s:e], gb[s:e], acc[:m]
            if wide:
                widen(data[a0 + s:a0 + e], scratch[0])
                if bshift != 0:
                    widen(data[a0 + bshift + s:a0 + bshift + e], scratch[1])
                v = _visit(sf[0, :m], sf[1 if bshift != 0 else 0, :m], g, qq, gbs, ac, mult, sc, r, eta, u, clip,
                           first)
            else:
                v = _visit(data[a0 + s:a0 + e], data[a0 + bshift + s:a0 + bshift + e], g, qq, gbs, ac, mult, sc, r,
                           eta, u, clip, first)
            mx = v if v > mx else mx
        gbits[t] = mx
        if first:
            tot = 0.0
            for k in range(LANES):
                tot += acc[k]
            ssum[i] = tot


@njit(parallel=True, cache=True)
def _run_tiles(f32s, bf16s, meta, scales, tiles, order, r32, eta32, u32, clip, t_stop, n_first, gamma, q,
               gbits, ssum):
    """Every tile over steps 0..t_stop-1, in parallel; tiles[c] = (block, lo, hi)."""
    for c in prange(tiles.shape[0]):
        b, lo, hi = tiles[c, 0], tiles[c, 1], tiles[c, 2]
        st, li, kind, row0 = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3]
        off, sd, d = meta[b, 4], meta[b, 5], meta[b, 6]
        bshift = sd if kind == CROSS else 0  # second factor: the next row
        mult = kind != LINEAR
        gs, qs = gamma[off:off + d], q[off:off + d]
        if st == 0:
            _tile(f32s[li], False, bshift, mult, scales[b], row0, sd, lo, hi, gs, qs, order, r32, eta32, u32, clip,
                  t_stop, n_first, gbits[c], ssum[c])
        else:
            _tile(bf16s[li], True, bshift, mult, scales[b], row0, sd, lo, hi, gs, qs, order, r32, eta32, u32, clip,
                  t_stop, n_first, gbits[c], ssum[c])


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

    def run(t_stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        gamma = np.zeros(int(offs[-1]), np.float32)
        q = np.zeros_like(gamma)
        gbits = np.zeros((tiles.shape[0], n_steps), np.uint32)
        ssum = np.zeros((tiles.shape[0], n), np.float64)
        _run_tiles(*lists, meta, scales, tiles, order, r32, eta32, u32, float(clip), t_stop, n_first, gamma, q,
                   gbits, ssum)
        return gamma, q, gbits, ssum

    gamma, q, gbits, ssum = run(n_steps)
    if tiles.shape[0]:
        gmax = gbits.max(axis=0).view(np.float32)
        t_star = first_coupled_step(order, gmax, ssum.sum(axis=0), rounding_margins(yy))
    else:
        t_star = n_steps
    if t_star < n_steps:  # the tiles went on with wrong residuals after t*: redo up to t*, then couple
        gamma, q, _, _ = run(t_star)
        out = solve_fused(blocks, y, order, etas, us, clip, progress=progress, start=(t_star, gamma, q))
        return out, CoordRun(n_steps, t_star)
    return [torch.from_numpy(gamma[offs[k]:offs[k + 1]].copy()) for k in range(len(blocks))], CoordRun(n_steps, n_steps)
