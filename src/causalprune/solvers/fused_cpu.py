"""CPU path of the cumulative-penalty Lasso SGD: one fused numba kernel.

Per sample the update needs r = γ·x_i − y_i, which depends on *all* coordinates of γ after
the previous sample, so samples are strictly sequential and each one costs a full pass over
x, γ and q. The kernel makes that pass exactly once: while it updates coordinate k for
sample i it also adds γ_k(new)·x_{i+1,k} to the dot product of the *next* sample. The pass
is split into fixed chunks that threads share (``prange``); chunk partial dots are summed in
chunk order, so results do not depend on the thread count.

bfloat16 data is read in place: the tensor is viewed as uint16 and each value is widened
with ``uint32(u16) << 16`` (bf16 is the top half of a float32), never copied to float32.

Numerics: γ and q are stored in float32; each coordinate's update is computed in float64
from them and rounded once when stored; dot products accumulate in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload
from numba.typed import List

from .blocks import KINDS, FeatureBlock

__all__ = ["CHUNK", "solve_fused", "as_numba_array", "chunk_table", "dot_acc", "update_block"]

#: coordinates per work unit: big enough to amortise scheduling, small enough to balance 2+ cores
CHUNK = 16384
_SQUARE, _CROSS = KINDS.index("square"), KINDS.index("cross")


def _wide(v):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_wide, inline="always")
def _wide_impl(v):
    """Widen one stored value to float64; uint16 holds bfloat16 bits."""
    if v == types.uint16:
        return lambda v: np.float64(np.uint32(np.uint32(v) << np.uint32(16)).view(np.float32))
    if isinstance(v, types.Float):
        return lambda v: np.float64(v)
    return None


@njit(inline="always")
def _feat(data, kind, scale, base, stride, j):
    """Feature j of the sample whose row starts at flat index ``base`` (see FeatureBlock)."""
    a = _wide(data[base + j])
    if kind == _SQUARE:
        a = a * a
    elif kind == _CROSS:
        a = a * _wide(data[base + stride + j])
    return scale * a


@njit(inline="always")
def _coord(gk, qk, xv, r, eta, u, clip):
    """One coordinate of the cumulative-penalty update (method-facts §2); returns (γ, q) new."""
    g = min(max(r * xv, -clip), clip)
    z = np.float64(gk) - eta * g
    q = np.float64(qk)
    if z > 0.0:
        gn = max(0.0, z - (u + q))  # clip towards zero by the penalty not yet received
    elif z < 0.0:
        gn = min(0.0, z + (u - q))
    else:
        gn = z
    return np.float32(gn), np.float32(q + (gn - z))


@njit(cache=True)
def _chunk(data, kind, scale, stride, row, nrow, lo, hi, off, gamma, q, r, eta, u, clip):
    """Update coordinates [lo, hi) of one block for sample row ``row``; return the partial
    dot of the new γ with sample row ``nrow`` (the next sample)."""
    acc = 0.0
    base, nbase = row * stride, nrow * stride
    for j in range(lo, hi):
        k = off + j
        gn, qn = _coord(gamma[k], q[k], _feat(data, kind, scale, base, stride, j), r, eta, u, clip)
        gamma[k] = gn
        q[k] = qn
        acc += np.float64(gn) * _feat(data, kind, scale, nbase, stride, j)
    return acc


@njit(parallel=True, cache=True)
def _run(f32s, bf16s, f64s, meta, scales, chunks, y, order, etas, us, t0, t1, r, gamma, q, clip, part):
    """Steps t0..t1-1 of the visit order; ``r`` is the residual of step t0. Returns the
    residual of step t1 (meaningless after the last step)."""
    nsteps = order.shape[0]
    for t in range(t0, t1):
        i = order[t]
        inext = order[t + 1] if t + 1 < nsteps else i
        eta = etas[t]
        u = us[t]
        for c in prange(chunks.shape[0]):
            b = chunks[c, 0]
            st, li, kind, row0, off, sd = meta[b, 0], meta[b, 1], meta[b, 2], meta[b, 3], meta[b, 4], meta[b, 5]
            lo, hi, sc = chunks[c, 1], chunks[c, 2], scales[b]
            rw, nrw = row0 + i, row0 + inext
            if st == 0:
                part[c] = _chunk(f32s[li], kind, sc, sd, rw, nrw, lo, hi, off, gamma, q, r, eta, u, clip)
            elif st == 1:
                part[c] = _chunk(bf16s[li], kind, sc, sd, rw, nrw, lo, hi, off, gamma, q, r, eta, u, clip)
            else:
                part[c] = _chunk(f64s[li], kind, sc, sd, rw, nrw, lo, hi, off, gamma, q, r, eta, u, clip)
        acc = 0.0
        for c in range(chunks.shape[0]):  # fixed order: deterministic for any thread count
            acc += part[c]
        r = acc - y[inext]
    return r


def as_numba_array(t: torch.Tensor) -> tuple[np.ndarray, int]:
    """(flat, row_stride): a zero-copy 1-D numpy view covering a 2-D CPU tensor whose rows
    are contiguous, element (r, j) at ``flat[r*row_stride + j]``. Column slices of a bigger
    recording are therefore read in place. float32/float64 stay as they are, bfloat16 becomes
    its uint16 bits; float16 (and a tensor with strided columns) is copied, to float32."""
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float64, torch.bfloat16):
        t = t.float()  # float16 -> float32 is exact
    if t.dim() != 2 or (t.shape[1] > 1 and t.stride(1) != 1):
        t = t.contiguous()
    rows, d = t.shape
    stride = int(t.stride(0)) if rows > 1 else d
    span = (rows - 1) * stride + d if rows and d else 0
    flat = t.as_strided((span,), (1,), t.storage_offset())
    if flat.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16), stride
    return flat.numpy(), stride


def chunk_table(dims: list[int]) -> np.ndarray:
    """(block, lo, hi) rows covering every block in CHUNK-sized pieces, block-major."""
    rows = [(b, lo, min(lo + CHUNK, d)) for b, d in enumerate(dims) for lo in range(0, d, CHUNK)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _typed_lists(arrays: list[np.ndarray]) -> tuple[list, np.ndarray]:
    """Split arrays into numba typed lists by dtype; return (lists, (storage, index) per array)."""
    lists = [List.empty_list(types.Array(ty, 1, "C")) for ty in (types.float32, types.uint16, types.float64)]
    codes = {np.dtype(np.float32): 0, np.dtype(np.uint16): 1, np.dtype(np.float64): 2}
    where = np.zeros((len(arrays), 2), dtype=np.int64)
    for k, a in enumerate(arrays):
        st = codes[a.dtype]
        where[k] = (st, len(lists[st]))
        lists[st].append(a)
    return lists, where


def solve_fused(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                us: np.ndarray, clip: float, epoch_len: int, progress: bool = False) -> list[torch.Tensor]:
    """Run the whole visit ``order`` on CPU; return one float32 γ per block."""
    from tqdm.auto import tqdm

    views = [as_numba_array(b.data) for b in blocks]
    lists, where = _typed_lists([v[0] for v in views])
    dims = [b.dim for b in blocks]
    offs = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)
    meta = np.array([(w[0], w[1], KINDS.index(b.kind), b.row0, offs[k], v[1])
                     for k, (b, w, v) in enumerate(zip(blocks, where, views))], dtype=np.int64)
    scales = np.array([float(b.scale) for b in blocks], dtype=np.float64)
    chunks = chunk_table(dims)
    gamma = np.zeros(int(offs[-1]), np.float32)
    q = np.zeros_like(gamma)
    part = np.zeros(chunks.shape[0], np.float64)
    yy = y.detach().cpu().double().numpy()
    # γ starts at zero, so the first residual is -y exactly
    r = -float(yy[order[0]]) if len(order) else 0.0
    for t0 in tqdm(range(0, len(order), max(epoch_len, 1)), desc="lasso epochs", disable=not progress or None):
        t1 = min(t0 + epoch_len, len(order))
        r = _run(*lists, meta, scales, chunks, yy, order, etas, us, t0, t1, r, gamma, q, float(clip), part)
    return [torch.from_numpy(gamma[offs[k]:offs[k + 1]].copy()) for k in range(len(blocks))]


@njit(parallel=True, cache=True)
def _dot_chunks(x, gamma, part):
    n = gamma.shape[0]
    for c in prange(part.shape[0]):
        acc = 0.0
        for j in range(c * CHUNK, min((c + 1) * CHUNK, n)):
            acc += np.float64(gamma[j]) * _wide(x[j])
        part[c] = acc


@njit(cache=True)
def _sum_into(acc, part):
    for c in range(part.shape[0]):
        acc += part[c]
    return acc


def dot_acc(acc: float, gamma: np.ndarray, x: np.ndarray) -> float:
    """acc + γ·x with the same chunking and summation order as the fused kernel (so the
    streaming solver reproduces it bit for bit). x is (d,) float32/uint16(bf16)/float64."""
    part = np.zeros((gamma.shape[0] + CHUNK - 1) // CHUNK, np.float64)
    _dot_chunks(x, gamma, part)
    return float(_sum_into(float(acc), part))


@njit(parallel=True, cache=True)
def _update(x, gamma, q, r, eta, u, clip):
    n = gamma.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        for j in range(c * CHUNK, min((c + 1) * CHUNK, n)):
            gamma[j], q[j] = _coord(gamma[j], q[j], _wide(x[j]), r, eta, u, clip)


def update_block(x: np.ndarray, gamma: np.ndarray, q: np.ndarray, r: float, eta: float, u: float, clip: float) -> None:
    """In-place cumulative-penalty update of one block with residual ``r`` (no dot)."""
    _update(x, gamma, q, float(r), float(eta), float(u), float(clip))
