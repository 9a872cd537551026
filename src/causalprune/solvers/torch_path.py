"""Vectorised torch path of the cumulative-penalty Lasso SGD (any device; used on CUDA).

Same arithmetic as the fused CPU kernel: float32 features and elementwise update, the
schedule scalars rounded to float32 once per step, dot products in float64. It loops over samples in Python (about
a dozen elementwise kernels per step) but never synchronises with the device: the residual
stays a 0-dim device tensor and the visit order / schedule live on the host.

Untested on GPU (the project's dev machines have none); its CPU run is the parity reference
for the fused kernel.
"""

from __future__ import annotations

import numpy as np
import torch

from .blocks import FeatureBlock, block_features

__all__ = ["coord_update_", "f32", "residual", "solve_torch"]


def coord_update_(gamma: torch.Tensor, q: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
                  eta: float, u: float, clip: float) -> None:
    """In place: one cumulative-penalty step (docs/method.md §2) for all coordinates of a block.

    ``x`` float32 features, ``r`` a float32 0-dim residual, eta/u/clip float32-representable.
    γ is pulled towards zero, never across it, by the penalty it has not yet received (u ± q);
    q records the penalty actually applied. Mirrors kernels.coord_update operation by operation.
    """
    g = (r * x).clamp_(-clip, clip)
    z = gamma - eta * g
    pos = (z - (u + q)).clamp_(min=0.0)
    neg = (z + (u - q)).clamp_(max=0.0)
    gn = torch.where(z > 0, pos, torch.where(z < 0, neg, z))
    q.add_(gn - z)
    gamma.copy_(gn)


def f32(v: float) -> float:
    """``v`` rounded to float32 (as a Python float), as the kernel sees the scalar."""
    return float(np.float32(v))


def residual(gammas: list[torch.Tensor], xs: list[torch.Tensor], y: torch.Tensor | float) -> torch.Tensor:
    """γ·x − y over all blocks, accumulated in float64 (0-dim tensor on the device); ``y`` a
    0-dim float64 device tensor or a Python number (never copied to the device)."""
    r = torch.dot(gammas[0].double(), xs[0].double())
    for g, x in zip(gammas[1:], xs[1:]):
        r = r + torch.dot(g.double(), x.double())
    return r - y


def solve_torch(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                us: np.ndarray, clip: float, progress: bool = False) -> list[torch.Tensor]:
    """Run the whole visit ``order`` with torch ops on the blocks' device."""
    from tqdm.auto import tqdm

    device = blocks[0].data.device
    gammas = [torch.zeros(b.dim, dtype=torch.float32, device=device) for b in blocks]
    qs = [torch.zeros_like(g) for g in gammas]
    y64 = y.detach().to(device=device, dtype=torch.float64)
    steps, clip = order.tolist(), f32(clip)
    for t in tqdm(range(len(steps)), desc="lasso steps", disable=not progress or None):
        i = steps[t]
        xs = [block_features(b, i)[0] for b in blocks]
        r = residual(gammas, xs, y64[i]).float()
        for g, q, x in zip(gammas, qs, xs):
            coord_update_(g, q, x, r, f32(etas[t]), f32(us[t]), clip)
    return gammas
