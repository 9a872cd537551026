"""From the recording to the Lasso's features (paper eqs. 7-9, 16-17; weight sharing of §3/§5).

The recorder stores ``r_t = dtheta_t / lr``. The first-order model (eq. 7) regresses
``y_s = L_{s+1} - L_s`` on ``x_{s,k} = dtheta_{s,k}^2 = lr^2 * r_{s,k}^2`` (kind "square", scale lr^2),
without materialising x.

Momentum (Appendix A, eq. 16): three features per weight, ``dtheta_{s+1}^2``, ``dtheta_s^2`` and
``dtheta_s * dtheta_{s+1}``, with target ``L_{s+2} - L_{s+1}``.

Weight sharing (structured pruning): if every weight k of a group G shares one gamma_G, eq. (7)
becomes ``dL = sum_G gamma_G * sum_{k in G} dtheta_k^2``: the group's feature is the sum of its
squared deltas (and, for momentum, the sums of the three per-weight features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..solvers import FeatureBlock
from .slots import LayerSlot

__all__ = ["LayerFeatures", "group_ids", "layer_features", "expand_keep"]


@dataclass
class LayerFeatures:
    key: str
    slot: LayerSlot
    blocks: list[FeatureBlock]         # 1 block (first order) or 3 (momentum)
    gid: torch.Tensor | None           # group id of each live column; None = one gamma per weight
    n_groups: int


def group_ids(shape: torch.Size, flat_idx: torch.Tensor, granularity: str) -> tuple[torch.Tensor, int]:
    """Group of each flat weight index: output filter/row, input channel, or the whole layer."""
    numel = 1
    for s in shape:
        numel *= s
    if granularity == "filter":
        return flat_idx // (numel // shape[0]), shape[0]
    if granularity == "channel":
        if len(shape) < 2:
            return torch.zeros_like(flat_idx), 1
        inner = numel // (shape[0] * shape[1])
        return (flat_idx // inner) % shape[1], shape[1]
    if granularity == "layer":
        return torch.zeros_like(flat_idx), 1
    raise ValueError(f"unknown granularity {granularity!r}")


def _group_sum(rows_a: torch.Tensor, rows_b: torch.Tensor, gid: torch.Tensor, n_groups: int,
               chunk: int = 256) -> torch.Tensor:
    """sum_{k in G} a_{t,k} * b_{t,k} for every row t and group G, in row chunks (bounded memory)."""
    out = torch.zeros((rows_a.shape[0], n_groups), dtype=torch.float32, device=rows_a.device)
    for i in range(0, rows_a.shape[0], chunk):
        prod = rows_a[i:i + chunk].float() * rows_b[i:i + chunk].float()
        out[i:i + chunk].index_add_(1, gid, prod)
    return out


def layer_features(deltas: torch.Tensor, slots: Sequence[LayerSlot], lr: float, *, momentum: bool,
                   granularity: str) -> list[LayerFeatures]:
    """One LayerFeatures per slot, in the given order. ``deltas`` is the recorded (T, D_live) matrix of
    dtheta/lr; slot k owns its columns ``start:stop``. Features are scaled back by lr^2 (eq. 7)."""
    D = deltas
    scale = lr ** 2
    out = []
    for slot in slots:
        cols = D[:, slot.start:slot.stop]
        if granularity == "weight":
            data, gid, n_groups = cols, None, slot.stop - slot.start
            sq = dict(kind="square")
            blocks = [FeatureBlock(data, row0=1, scale=scale, **sq), FeatureBlock(data, row0=0, scale=scale, **sq),
                      FeatureBlock(data, kind="cross", row0=0, scale=scale)] if momentum else \
                [FeatureBlock(data, row0=0, scale=scale, **sq)]
        else:
            shape = slot.param.shape
            flat = slot.idx if slot.idx is not None else torch.arange(slot.param.numel(), device=cols.device)
            gid, n_groups = group_ids(shape, flat.to(cols.device), granularity)
            sq = _group_sum(cols, cols, gid, n_groups)
            if momentum:
                cross = _group_sum(cols[:-1], cols[1:], gid, n_groups)
                blocks = [FeatureBlock(sq, row0=1, scale=scale), FeatureBlock(sq, row0=0, scale=scale),
                          FeatureBlock(cross, row0=0, scale=scale)]
            else:
                blocks = [FeatureBlock(sq, row0=0, scale=scale)]
        out.append(LayerFeatures(slot.key, slot, blocks, gid, n_groups))
    return out


def expand_keep(lf: LayerFeatures, gammas: list[torch.Tensor]) -> torch.Tensor:
    """Weight-shaped uint8 keep mask: kept iff any of its gammas is nonzero (eq. 19)."""
    nonzero = torch.zeros_like(gammas[0], dtype=torch.bool)
    for g in gammas:
        nonzero |= g != 0
    if lf.gid is not None:
        nonzero = nonzero[lf.gid]
    p = lf.slot.param
    full = torch.zeros(p.numel(), dtype=torch.uint8, device=nonzero.device)
    if lf.slot.idx is None:
        full.copy_(nonzero.to(torch.uint8))
    else:
        full[lf.slot.idx.to(nonzero.device)] = nonzero.to(torch.uint8)
    return full.reshape(p.shape)
