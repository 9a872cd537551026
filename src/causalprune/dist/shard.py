"""How one global batch is split over the ranks, and the loss each rank contributes.

Every rank walks the *same* sequence of global batches (the plan is a pure function of the seed)
and trains on its contiguous share of each one, so the data seen per optimizer step equals the
single-process run's. Each rank's loss is ``sum over its share * W / B``: the DDP average of those
gradients is then the gradient of the global batch's mean loss, even when the shares differ in
size (last partial batch, B not divisible by W).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .env import is_dist, rank, world_size

__all__ = ["rank_seed", "shard_bounds", "local_batches", "batch_loss", "subset_loss"]


def rank_seed(seed: int) -> int:
    """Seed for dropout and other in-model randomness: rank 0 keeps ``seed`` (so a 1-process run is
    unchanged); other ranks get distinct streams, else their shares would share dropout masks."""
    r = rank()
    return seed if r == 0 else (seed * 1_000_003 + 7919 * r + 17) % (2**31 - 1)


def shard_bounds(n: int, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """Rank ``r``'s contiguous share ``[lo, hi)`` of a batch of ``n`` samples (sizes differ by <= 1)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    base, extra = divmod(n, w)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def local_batches(batches, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(x, y, n_global) of this rank's share of every global batch of ``batches.epoch(seed)``."""
    w = world_size()
    for x, y in batches.epoch(seed):
        n = int(y.shape[0])
        if w == 1:
            yield x, y, n
        else:
            lo, hi = shard_bounds(n)
            yield x[lo:hi], y[lo:hi], n


def batch_loss(out: torch.Tensor, y: torch.Tensor, n_global: int) -> torch.Tensor:
    """Mean cross-entropy of the global batch, as this rank's contribution (see module doc)."""
    if not is_dist():
        return F.cross_entropy(out, y)
    return F.cross_entropy(out, y, reduction="sum") * (world_size() / n_global)


def subset_loss(out: torch.Tensor, y: torch.Tensor, n_global: int, k: int) -> torch.Tensor:
    """Mean cross-entropy of the first ``k`` samples of the global batch (all of it when smaller),
    detached, as this rank's contribution: the mean over ranks (what the recorder stores) is that
    subset's mean loss. ``--loss-samples`` uses it to record a smaller-sample L_t than the batch the
    step trains on, as the authors' DDP runs did with rank 0's local loss (docs/method.md §1)."""
    k = min(k, n_global)
    lo, hi = shard_bounds(n_global)  # (0, n_global) in one process
    part = slice(0, max(0, min(hi, k) - lo))  # this rank's samples among the global first k
    return batch_loss(out.detach()[part], y[part], k)
