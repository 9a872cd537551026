"""CPU path of the cumulative-penalty Lasso SGD: one fused numba kernel.

Per sample the update needs r = γ·x_i − y_i, which depends on *all* coordinates of γ after
the previous sample, so samples are strictly sequential and each one costs a full pass over
x, γ and q. The kernel makes that pass exactly once: while it updates coordinate k for
sample i it also adds γ_k(new)·x_{i+1,k} to the dot product of the *next* sample.

Layout (why it is fast *and* deterministic): coordinates are cut into CHUNK-sized work units
shared by threads (``prange``); inside a unit, coordinate p goes to lane p % LANES of a
float64 accumulator, rows of LANES coordinates in order, and the lanes are then summed in
order, as are the units. The inner loop over a row is elementwise (no reduction) and
branch-free (selects only), so LLVM vectorises it without fastmath, and the summation order
is fixed: results do not depend on the thread count, and the streaming solver (online.py)
reproduces them bit for bit.

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

import time

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.typed import List

from .blocks import KINDS, FeatureBlock

__all__ = ["CHUNK", "LANES", "solve_fused", "as_numba_array", "chunk_table", "dot_acc", "update_block"]

LANES = 256  # accumulator lanes = elements per vectorised row
CHUNK = 64 * LANES  # coordinates per work unit (64 KB of float32 state): balances 2+ cores
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@njit(inline="always")
def _coord(gk, qk, xv, r, eta, u, clip):
    """One coordinate of the cumulative-penalty update (method-facts §2), all float32;
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
        gn, qn = _coord(g[k], q[k], x, r, eta, u, clip)
        g[k] = gn
        q[k] = qn
        acc[k] += np.float64(gn) * np.float64(sc * (an[k] * (bn[k] if mult else _ONE)))


@njit(cache=True)
def _widen(src, dst):
    """bfloat16 bits (uint16) -> float32 bits (uint32) in ``dst`` (integer ops: vectorised)."""
    for k in range(src.shape[0]):
        dst[k] = np.uint32(src[k]) << np.uint32(16)


@njit(cache=True)
def _unit(data, wide, bshift, mult, scale, a0, n0, lo, hi, gamma, q, acc, r, eta, u, clip):
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
            _widen(data[a0 + s:a0 + e], scratch[0])
            _widen(data[n0 + s:n0 + e], scratch[2])
            if bshift == 0:  # second factor is the same row: widen once
                _row(sf[0, :m], sf[0, :m], sf[2, :m], sf[2, :m], g, qq, ac, mult, sc, r, eta, u, clip)
            else:
                _widen(data[a0 + bshift + s:a0 + bshift + e], scratch[1])
                _widen(data[n0 + bshift + s:n0 + bshift + e], scratch[3])
                _row(sf[0, :m], sf[1, :m], sf[2, :m], sf[3, :m], g, qq, ac, mult, sc, r, eta, u, clip)
        else:
            _row(data[a0 + s:a0 + e], data[a0 + bshift + s:a0 + bshift + e], data[n0 + s:n0 + e],
                 data[n0 + bshift + s:n0 + bshift + e], g, qq, ac, mult, sc, r, eta, u, clip)
    tot = 0.0
    for k in range(LANES):  # fixed order
        tot += acc[k]
    return tot


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
            st, li, kind, row0, off, sd, d = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3], meta[b, 4], meta[b, 5], meta[b, 6]
            bshift = sd if kind == 2 else 0  # "cross": second factor is the next row
            mult = kind != 0  # "linear": second factor is 1
            a0, n0 = (row0 + i) * sd, (row0 + inext) * sd
            gb, qb, sc = gamma[off:off + d], q[off:off + d], scales[b]
            if st == 0:
                part[c] = _unit(f32s[li], False, bshift, mult, sc, a0, n0, lo, hi, gb, qb, acc[c], r, eta, u, clip)
            else:
                part[c] = _unit(bf16s[li], True, bshift, mult, sc, a0, n0, lo, hi, gb, qb, acc[c], r, eta, u, clip)
        tot = 0.0
        for c in range(units.shape[0]):  # fixed order: deterministic for any thread count
            tot += part[c]
        r = tot - y[inext]
    return r


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


class _ThreadTuner:
    """Chooses numba's thread count for the next slice of steps.

    Every step ends in a barrier, so on a machine whose cores are busy with other work a
    descheduled worker stalls each step (measured: 2 threads 15x slower than 1 under load 8
    on 2 cores). Results do not depend on the thread count (fixed summation order), so we
    simply time short slices with all threads and with one, keep the faster, and re-probe
    every ``REPROBE`` slices because the load changes.
    """

    REPROBE = 32

    def __init__(self, n_units: int) -> None:
        self.max = numba.get_num_threads()
        self.candidates = [self.max, 1] if self.max > 1 and n_units > 1 else [1]
        self.best, self.count, self.trial = self.candidates[0], 0, {}

    def next(self) -> int:
        pending = [c for c in self.candidates if c not in self.trial]
        return pending[0] if pending else self.best

    def record(self, threads: int, seconds_per_step: float) -> None:
        if len(self.trial) < len(self.candidates):
            self.trial[threads] = seconds_per_step
            if len(self.trial) == len(self.candidates):
                self.best = min(self.trial, key=self.trial.get)
            return
        self.count += 1
        if self.count % self.REPROBE == 0:
            self.trial = {}

    def close(self) -> None:
        numba.set_num_threads(self.max)


def solve_fused(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                us: np.ndarray, clip: float, progress: bool = False) -> list[torch.Tensor]:
    """Run the whole visit ``order`` on CPU; return one float32 γ per block."""
    from tqdm.auto import tqdm

    views = [as_numba_array(b.data) for b in blocks]
    lists, where = _typed_lists([v[0] for v in views])
    dims = [b.dim for b in blocks]
    offs = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)
    meta = np.array([(w[0], w[1], KINDS.index(b.kind), b.row0, offs[k], v[1], b.dim)
                     for k, (b, w, v) in enumerate(zip(blocks, where, views))], dtype=np.int64).reshape(-1, 7)
    scales = np.array([float(b.scale) for b in blocks], dtype=np.float64)
    units = chunk_table(dims)
    gamma = np.zeros(int(offs[-1]), np.float32)
    q = np.zeros_like(gamma)
    part = np.zeros(units.shape[0], np.float64)
    acc = np.zeros((units.shape[0], LANES), np.float64)
    yy = np.ascontiguousarray(y.detach().cpu().double().numpy())
    r = -float(yy[order[0]])  # γ starts at zero, so the first residual is -y exactly
    # slices of ~2 ms of work, so that timing them (and the Python call) costs nothing
    per_slice = int(min(4096, max(8, 2**22 // max(int(offs[-1]), 1))))
    tuner = _ThreadTuner(units.shape[0])
    try:
        with tqdm(total=len(order), desc="lasso steps", disable=not progress or None) as bar:
            for t0 in range(0, len(order), per_slice):
                t1 = min(t0 + per_slice, len(order))
                threads = tuner.next()
                numba.set_num_threads(threads)
                start = time.perf_counter()
                r = _run(*lists, meta, scales, units, yy, order, etas, us, t0, t1, r, gamma, q, float(clip), part, acc)
                tuner.record(threads, (time.perf_counter() - start) / (t1 - t0))
                bar.update(t1 - t0)
    finally:
        tuner.close()
    return [torch.from_numpy(gamma[offs[k]:offs[k + 1]].copy()) for k in range(len(blocks))]


@njit(cache=True)
def _dot_unit(x, wide, lo, hi, gamma, acc):
    """Partial γ·x over [lo, hi) with the lane layout and order of :func:`_unit`."""
    acc[:] = 0.0
    scratch = np.empty(LANES if wide else 0, np.uint32)
    sf = scratch.view(np.float32)
    for s in range(lo, hi, LANES):
        e = min(s + LANES, hi)
        g, ac = gamma[s:e], acc[:e - s]
        if wide:
            _widen(x[s:e], scratch)
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
        _unit(x, wide, 0, False, 1.0, 0, 0, c * CHUNK, min((c + 1) * CHUNK, d), gamma, q, acc[c], r, eta, u, clip)


def update_block(x: np.ndarray, gamma: np.ndarray, q: np.ndarray, r: float, eta: float, u: float, clip: float) -> None:
    """In place: the cumulative-penalty update of one block with residual ``r`` (features x, scale 1)."""
    n_units = (gamma.shape[0] + CHUNK - 1) // CHUNK
    lanes = np.zeros((n_units, LANES), np.float64)
    _update_units(x, x.dtype == np.uint16, gamma, q, float(r), float(eta), float(u), float(clip), lanes)
