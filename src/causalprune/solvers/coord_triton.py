"""GPU path of the reference Lasso when its coordinates decouple: one Triton launch per feature block.

The same exact decoupling as coord_cpu.py (decoupling.py says when it holds): each program owns
BLOCK coordinates, keeps their γ, q and running max |γ| in registers for all 3·T visits, and
streams its columns of X, so X is read once per epoch and nothing waits for the host between
steps. Where the check fails, the coupled torch path (torch_path.py, today's GPU solver) runs
the whole fit instead, so the result is that path's bit for bit in every case: the element-wise
update below mirrors kernels.coord_update / torch_path.coord_update_ operation by operation
(selects, not min/max, so NaN travels the same way), and the kernel is compiled without
floating-point contraction (an FMA would round γ − η·g once instead of twice).

In the first epoch each program also writes Σ|x| over its coordinates per sample (summed in
float64: only a bound is needed, and its rounding is far inside decoupling.SLACK).

Without a GPU the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1`` before triton
is imported), which is how its parity is tested on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from .blocks import KINDS, FeatureBlock
from .decoupling import first_coupled_step, rounding_margins

__all__ = ["BLOCK", "solve_coord_triton", "solve_coord_triton_streamed"]

BLOCK = 1024  # coordinates per program
_LINEAR, _SQUARE, _CROSS = (KINDS.index(k) for k in ("linear", "square", "cross"))


@triton.jit
def _coord_kernel(data, gamma, q, h, ssum, order, r32, eta32, u32, n_steps, n_first, n_samples, d, sd, row0,
                  scale, clip, KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = pid * BLOCK + tl.arange(0, BLOCK)
    mask = cols < d
    g = tl.zeros([BLOCK], dtype=tl.float32)
    qq = tl.zeros([BLOCK], dtype=tl.float32)
    hh = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(0, n_steps):
        i = tl.load(order + t)
        base = (row0 + i) * sd
        a = tl.load(data + base + cols, mask=mask, other=0.0).to(tl.float32)
        if KIND == 1:  # square: sc·(a·a)
            a = a * a
        if KIND == 2:  # cross: sc·(a·b), b from the next row
            a = a * tl.load(data + base + sd + cols, mask=mask, other=0.0).to(tl.float32)
        x = scale * a
        r = tl.load(r32 + t)
        eta = tl.load(eta32 + t)
        u = tl.load(u32 + t)
        gr = r * x
        gr = tl.where(gr > clip, clip, gr)
        gr = tl.where(gr < -clip, -clip, gr)
        z = g - eta * gr
        up = z - (u + qq)
        up = tl.where(up > 0.0, up, 0.0)
        dn = z + (u - qq)
        dn = tl.where(dn < 0.0, dn, 0.0)
        gn = tl.where(z > 0.0, up, tl.where(z < 0.0, dn, z))
        qq = qq + (gn - z)
        g = gn
        ag = tl.abs(gn)
        hh = tl.where(ag > hh, ag, hh)
        if t < n_first:
            tl.store(ssum + pid * n_samples + i, tl.sum(tl.abs(x).to(tl.float64), axis=0))
    tl.store(gamma + cols, g, mask=mask)
    tl.store(q + cols, qq, mask=mask)
    tl.store(h + cols, hh, mask=mask)


def _matrix(block: FeatureBlock) -> tuple[torch.Tensor, int]:
    """(data, row stride): float32 and bfloat16 read in place (a column slice keeps its stride),
    anything else rounded to float32 first, as the other paths do."""
    data = block.data.detach()
    if data.dtype not in (torch.float32, torch.bfloat16):
        data = data.float()
    if data.shape[1] > 1 and data.stride(1) != 1:
        data = data.contiguous()
    return data, int(data.stride(0)) if data.shape[0] > 1 else int(data.shape[1])


class _Plan:
    """The per-visit inputs every launch shares, on the device: visit order, decoupled
    residuals fl32(0 − y_i) = −fl32(y_i), and η, u rounded to float32 once per step."""

    def __init__(self, y: torch.Tensor, order: np.ndarray, etas: np.ndarray, us: np.ndarray, device: torch.device):
        self.yy = y.detach().double().cpu().numpy()
        self.order = order
        self.n, self.n_steps = int(y.shape[0]), len(order)
        self.n_first = min(self.n, self.n_steps)
        on = {"device": device}
        self.order_t = torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64)).to(**on)
        self.r32 = torch.from_numpy((-self.yy[order]).astype(np.float32)).to(**on)
        self.eta32 = torch.from_numpy(etas.astype(np.float32)).to(**on)
        self.u32 = torch.from_numpy(us.astype(np.float32)).to(**on)
        self.g_max = torch.zeros((), dtype=torch.float32, **on)
        self.sums = torch.zeros(self.n, dtype=torch.float64, **on)
        self.finite = torch.ones((), dtype=torch.bool, **on)

    def fit(self, block: FeatureBlock, clip: float) -> torch.Tensor:
        """One launch over all of ``block``'s coordinates; folds its max |γ|, Σ|x| per sample and
        finiteness into the plan's totals (no host sync)."""
        gamma = torch.zeros(block.dim, dtype=torch.float32, device=self.g_max.device)
        if block.dim == 0:
            return gamma
        data, sd = _matrix(block)
        progs = triton.cdiv(block.dim, BLOCK)
        q, h = torch.zeros_like(gamma), torch.zeros_like(gamma)
        ssum = torch.zeros((progs, self.n), dtype=torch.float64, device=gamma.device)
        _coord_kernel[(progs,)](data, gamma, q, h, ssum, self.order_t, self.r32, self.eta32, self.u32, self.n_steps,
                                self.n_first, self.n, block.dim, sd, int(block.row0), float(np.float32(block.scale)),
                                float(np.float32(clip)), KIND=KINDS.index(block.kind), BLOCK=BLOCK,
                                enable_fp_fusion=False)
        self.g_max = torch.maximum(self.g_max, h.max())
        self.sums += ssum.sum(0)
        self.finite &= torch.isfinite(gamma).all()
        return gamma

    def exact(self) -> bool:
        """The decoupling check over everything fitted (the one host sync, after every launch)."""
        g_all = float(self.g_max) if bool(self.finite) else float("nan")
        t_star = first_coupled_step(self.order, np.full(self.n_steps, g_all), self.sums.cpu().numpy(),
                                    rounding_margins(self.yy))
        return t_star == self.n_steps


def solve_coord_triton(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                       us: np.ndarray, clip: float) -> tuple[list[torch.Tensor], bool]:
    """(γ per block, exact): the decoupled fit on the blocks' device; ``exact`` False means the
    check failed and the caller must run the coupled path instead (γ is then meaningless)."""
    plan = _Plan(y, order, etas, us, blocks[0].data.device)
    gammas = [plan.fit(b, clip) for b in blocks]
    return gammas, plan.exact()


def solve_coord_triton_streamed(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                                us: np.ndarray, clip: float, device: torch.device,
                                chunk_bytes: int = 256 * 1024**2) -> tuple[list[torch.Tensor], bool]:
    """As :func:`solve_coord_triton` for host-resident blocks (a spilled recording): each block's
    columns go to ``device`` in chunks of about ``chunk_bytes`` (all rows of a few columns: each
    coordinate needs its whole column, and only that), pinned and copied without blocking."""
    device = torch.device(device)
    plan = _Plan(y, order, etas, us, device)
    gammas = []
    for b in blocks:
        rows = b.data.shape[0]
        width = max(1, chunk_bytes // max(rows * b.data.element_size(), 1))
        parts = []
        for a in range(0, b.dim, width):
            cols = b.data[:, a:a + width].contiguous()
            cols = cols.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else cols.to(device)
            parts.append(plan.fit(FeatureBlock(cols, kind=b.kind, row0=b.row0, scale=b.scale), clip))
        gammas.append(torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float32, device=device))
    return gammas, plan.exact()
