"""Pruning methods: recorded data or weights in, keep-decisions out.

Each method returns a dict fqn -> uint8 keep tensor for *this* iteration; the experiment
multiplies it into the running mask (masks only shrink) and applies it.

* ``causal``: fit the Lasso of eq. (9) per layer (or over the network), keep gamma != 0.
* ``magnitude``: global |w| ranking of the weights still alive after the SGD epochs; prune a
  fraction f of the remaining weights per iteration (method-facts §4).
* ``random``: the same schedule, with uniformly random choices.
* ``none``: keep everything.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .config import Config
from .errors import RecordMemoryError
from .features import expand_keep, layer_features
from .masks import Masks
from .record import Recorder, format_bytes, free_memory_bytes
from .solvers import LassoSchedule, solve_exact_blocks, solve_online, solve_reference

__all__ = ["METHODS", "causal_decision", "magnitude_decision", "random_decision", "schedule_counts",
           "layer_target_counts"]


def causal_decision(rec: Recorder, cfg: Config, generator: torch.Generator
                    ) -> tuple[Masks, dict[str, torch.Tensor]]:
    """Fit eq. (9) on the recording; returns (keep masks, |gamma| per layer for logging)."""
    momentum = cfg.momentum > 0
    feats = layer_features(rec, momentum=momentum, granularity=cfg.granularity)
    y = rec.targets(lag=2 if momentum else 1).to(rec.device)
    sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=cfg.lasso_epochs)

    def fit(blocks):
        if cfg.solver == "exact":
            return _fit_exact(blocks, y, cfg.l1_coeff)
        if cfg.solver == "online":  # what the streaming fit (online.py) gives: one in-order pass
            return solve_online(blocks, y, cfg.l1_coeff, schedule=sched)
        return solve_reference(blocks, y, cfg.l1_coeff, schedule=sched, shuffle=True, generator=generator)

    if cfg.scope == "network":
        all_blocks = [b for lf in feats for b in lf.blocks]
        flat = fit(all_blocks)
        per_layer, i = [], 0
        for lf in feats:
            per_layer.append(flat[i:i + len(lf.blocks)])
            i += len(lf.blocks)
    else:
        per_layer = [fit(lf.blocks) for lf in feats]
    keep = {lf.key: expand_keep(lf, g) for lf, g in zip(feats, per_layer)}
    gammas = {lf.key: torch.stack([x.abs() for x in g]).amax(0) for lf, g in zip(feats, per_layer)}
    return keep, gammas


def _fit_exact(blocks, y: torch.Tensor, alpha: float) -> list[torch.Tensor]:
    """Exact Lasso (FISTA) on the materialised features, on the recording's device. The T x d fp32
    matrix and its rescaled copy must fit: refuse with a RecordMemoryError before allocating."""
    n, d = int(y.numel()), sum(b.dim for b in blocks)
    need, avail = 2 * 4 * n * d, free_memory_bytes(blocks[0].data.device)
    if need > 0.9 * avail:
        raise RecordMemoryError(
            f"--solver exact needs {format_bytes(need)} for {n} x {d:,} fp32 features (and a rescaled copy) "
            f"but {format_bytes(avail)} is free on {blocks[0].data.device}; use --scope layer, "
            "--solver reference or online, or fewer steps (--max-steps-per-epoch, --n-prune)")
    return solve_exact_blocks(blocks, y, alpha)


def schedule_counts(total: int, frac: float, iteration: int) -> int:
    """Weights pruned in total after ``iteration`` iterations: round(total * (1 - (1-f)^i)).
    Pruning the difference each iteration keeps the final sparsity within one weight of
    1 - (1 - f)^N (method-facts §4), without rounding error piling up."""
    return int(round(total * (1.0 - (1.0 - frac) ** iteration)))


def _prune_lowest(scores: dict[str, torch.Tensor], masks: Masks, n_prune: int) -> Masks:
    """Prune the ``n_prune`` live weights with the lowest score, globally across layers."""
    keys = list(masks)
    live = [masks[k].reshape(-1).bool() for k in keys]
    flat = torch.cat([torch.where(l, scores[k].reshape(-1).float().to(l.device), torch.tensor(math.inf))
                      for k, l in zip(keys, live)])
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:n_prune]] = False
    out, i = {}, 0
    for k in keys:
        n = masks[k].numel()
        out[k] = keep[i:i + n].reshape(masks[k].shape).to(torch.uint8)
        i += n
    return out


def _n_to_prune(masks: Masks, cfg: Config, iteration: int, prunable_total: int) -> int:
    target = schedule_counts(prunable_total, cfg.prune_fraction(), iteration)
    already = prunable_total - sum(int(m.sum()) for m in masks.values())
    return max(0, target - already)


def magnitude_decision(weights: dict[str, torch.Tensor], masks: Masks, cfg: Config, iteration: int,
                       generator: torch.Generator, layer_targets: dict[str, int] | None = None) -> Masks:
    scores = {k: w.detach().abs() for k, w in weights.items()}
    return _select(scores, masks, cfg, iteration, layer_targets)


def random_decision(weights: dict[str, torch.Tensor], masks: Masks, cfg: Config, iteration: int,
                    generator: torch.Generator, layer_targets: dict[str, int] | None = None) -> Masks:
    scores = {k: torch.rand(w.shape, generator=generator) for k, w in weights.items()}
    return _select(scores, masks, cfg, iteration, layer_targets)


def _select(scores, masks, cfg, iteration, layer_targets) -> Masks:
    if layer_targets is None:
        total = sum(m.numel() for m in masks.values())
        return _prune_lowest(scores, masks, _n_to_prune(masks, cfg, iteration, total))
    # --match-layers: prune within each layer down to the matched run's kept count.
    out = {}
    for k, m in masks.items():
        n = max(0, int(m.sum()) - layer_targets[k])
        out.update(_prune_lowest({k: scores[k]}, {k: m}, n))
    return out


def layer_target_counts(reference: Masks) -> dict[str, int]:
    """Kept weights per layer of a reference mask set (for --match-layers)."""
    return {k: int(m.sum()) for k, m in reference.items()}


METHODS: dict[str, Callable | None] = {
    "causal": causal_decision,
    "magnitude": magnitude_decision,
    "random": random_decision,
    "none": None,
}
