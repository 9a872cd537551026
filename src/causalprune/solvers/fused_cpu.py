"""CPU path of the cumulative-penalty Lasso SGD: one fused numba kernel over all samples.

Per sample the update needs r = γ·x_i − y_i, which depends on *all* coordinates of γ after
the previous sample, so samples are strictly sequential and each one costs a full pass over
x, γ and q. The kernel makes that pass exactly once: while it updates coordinate k for
sample i it also adds γ_k(new)·x_{i+1,k} to the dot product of the *next* sample. Layout,
bfloat16 handling and numerics: see kernels.py.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.typed import List

from .blocks import KINDS, FeatureBlock
from .kernels import CHUNK, CROSS, LANES, LINEAR, as_numba_array, dot_unit, update_unit
from .threads import ThreadTuner

__all__ = ["solve_fused", "chunk_table", "pack_blocks", "residual_at"]


@njit(parallel=True, cache=True)
def _run(f32s, bf16s, meta, scales, units, y, order, etas, us, t0, t1, r, gamma, q, clip, part, acc):
    """Steps t0..t1-1 of the visit order; ``r`` is the residual of step t0. Returns the
    residual of step t1 (meaningless after the last step).

    meta[b] = (storage 0/1 = float32/bfloat16 bits, index in its list, kind, row0, offset in γ,
    row stride, d); units[c] = (block, lo, hi)."""
    nsteps = order.shape[0]
    for t in range(t0, t1):
        i = order[t]
        inext = order[t + 1] if t + 1 < nsteps else i
        eta, u = etas[t], us[t]
        for c in prange(units.shape[0]):
            b, lo, hi = units[c, 0], units[c, 1], units[c, 2]
            st, li, kind, row0 = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3]
            off, sd, d = meta[b, 4], meta[b, 5], meta[b, 6]
            bshift = sd if kind == CROSS else 0  # second factor: the next row
            mult = kind != LINEAR  # "linear": second factor is 1
            a0, n0 = (row0 + i) * sd, (row0 + inext) * sd
            gb, qb, sc = gamma[off:off + d], q[off:off + d], scales[b]
            if st == 0:
                part[c] = update_unit(f32s[li], False, bshift, mult, sc, a0, n0, lo, hi, gb, qb, acc[c],
                                      r, eta, u, clip)
            else:
                part[c] = update_unit(bf16s[li], True, bshift, mult, sc, a0, n0, lo, hi, gb, qb, acc[c],
                                      r, eta, u, clip)
        tot = 0.0
        for c in range(units.shape[0]):  # fixed order: deterministic for any thread count
            tot += part[c]
        r = tot - y[inext]
    return r


@njit(parallel=True, cache=True)
def _dot(f32s, bf16s, meta, scales, units, i, gamma, part, acc):
    """γ·x_i over all blocks, summed unit by unit as :func:`_run` sums its next-sample dot."""
    for c in prange(units.shape[0]):
        b, lo, hi = units[c, 0], units[c, 1], units[c, 2]
        st, li, kind, row0 = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3]
        off, sd, d = meta[b, 4], meta[b, 5], meta[b, 6]
        bshift = sd if kind == CROSS else 0
        mult = kind != LINEAR
        gb = gamma[off:off + d]
        if st == 0:
            part[c] = dot_unit(f32s[li], False, bshift, mult, scales[b], (row0 + i) * sd, lo, hi, gb, acc[c])
        else:
            part[c] = dot_unit(bf16s[li], True, bshift, mult, scales[b], (row0 + i) * sd, lo, hi, gb, acc[c])
    tot = 0.0
    for c in range(units.shape[0]):  # fixed order, as in _run
        tot += part[c]
    return tot


def chunk_table(dims: list[int]) -> np.ndarray:
    """(block, lo, hi) work units covering every block in CHUNK-sized pieces, block-major."""
    rows = [(b, lo, min(lo + CHUNK, d)) for b, d in enumerate(dims) for lo in range(0, d, CHUNK)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _typed_lists(arrays: list[np.ndarray]) -> tuple[list, np.ndarray]:
    """Split arrays into numba typed lists by dtype; return (lists, (storage, index) per array)."""
    lists = [List.empty_list(types.Array(ty, 1, "C")) for ty in (types.float32, types.uint16)]
    codes = {np.dtype(np.float32): 0, np.dtype(np.uint16): 1}
    where = np.zeros((len(arrays), 2), dtype=np.int64)
    for k, a in enumerate(arrays):
        st = codes[a.dtype]
        where[k] = (st, len(lists[st]))
        lists[st].append(a)
    return lists, where


def pack_blocks(blocks: list[FeatureBlock]) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """(typed lists of the blocks' flat arrays, meta, scales, offsets in γ) as the numba kernels
    take them; meta[b] = (storage 0/1 = float32/bfloat16 bits, index in its list, kind, row0,
    offset in γ, row stride, d). The recordings are viewed in place, never copied."""
    views = [as_numba_array(b.data) for b in blocks]
    lists, where = _typed_lists([v[0] for v in views])
    dims = [b.dim for b in blocks]
    offs = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)
    meta = np.array([(w[0], w[1], KINDS.index(b.kind), b.row0, offs[k], v[1], b.dim)
                     for k, (b, w, v) in enumerate(zip(blocks, where, views))], dtype=np.int64).reshape(-1, 7)
    scales = np.array([float(b.scale) for b in blocks], dtype=np.float64)
    return lists, meta, scales, offs


def residual_at(blocks: list[FeatureBlock], y: np.ndarray, i: int, gamma: np.ndarray) -> float:
    """γ·x_i − y_i in float64, summed exactly as :func:`solve_fused` sums it (the residual a run
    resumed at a step that visits sample ``i`` needs)."""
    lists, meta, scales, _ = pack_blocks(blocks)
    units = chunk_table([b.dim for b in blocks])
    part = np.zeros(units.shape[0], np.float64)
    acc = np.zeros((units.shape[0], LANES), np.float64)
    return _dot(*lists, meta, scales, units, int(i), gamma, part, acc) - float(y[i])


def solve_fused(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                us: np.ndarray, clip: float, progress: bool = False,
                start: tuple[int, np.ndarray, np.ndarray] | None = None) -> list[torch.Tensor]:
    """Run the whole visit ``order`` on CPU; return one float32 γ per block.

    ``start = (t0, gamma, q)`` resumes at step t0 from the state after step t0 - 1 (the flat
    float32 γ and q of all blocks, updated in place): the result is then the uninterrupted
    run's, bit for bit."""
    from tqdm.auto import tqdm

    lists, meta, scales, offs = pack_blocks(blocks)
    units = chunk_table([b.dim for b in blocks])
    part = np.zeros(units.shape[0], np.float64)
    acc = np.zeros((units.shape[0], LANES), np.float64)
    yy = np.ascontiguousarray(y.detach().cpu().double().numpy())
    if start is None:
        t0, gamma = 0, np.zeros(int(offs[-1]), np.float32)
        q = np.zeros_like(gamma)
        r = -float(yy[order[0]])  # γ starts at zero, so the first residual is -y exactly
    else:
        t0, gamma, q = start
        r = residual_at(blocks, yy, int(order[t0]), gamma) if t0 < len(order) else 0.0
    tuner = ThreadTuner(units.shape[0])
    try:
        with tqdm(total=len(order), initial=t0, desc="lasso steps", disable=not progress or None) as bar:
            while t0 < len(order):
                threads, steps = tuner.next()
                t1 = min(t0 + steps, len(order))
                numba.set_num_threads(threads)
                began = time.perf_counter()
                r = _run(*lists, meta, scales, units, yy, order, etas, us, t0, t1, r, gamma, q, float(clip), part, acc)
                tuner.record(threads, (time.perf_counter() - began) / (t1 - t0))
                bar.update(t1 - t0)
                t0 = t1
    finally:
        tuner.close()
    return [torch.from_numpy(gamma[offs[k]:offs[k + 1]].copy()) for k in range(len(blocks))]
