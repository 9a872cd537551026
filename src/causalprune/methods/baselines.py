"""The baselines: global magnitude, random, and no pruning (docs/method.md, "Magnitude and random").

Magnitude and random run inside the same loop as causal pruning: the N_prune SGD epochs, then a
ranking of the weights still alive after them, then the rewind (iterative magnitude pruning with
late rewinding). Iteration i prunes up to round(P * (1 - (1 - f)^i)) weights in total, so the final
sparsity is within one weight of 1 - (1 - f)^N_iter with no rounding drift.

``--match-layers RUN`` prunes within each layer down to another run's kept count instead of
ranking globally (layer-matched magnitude: same per-layer budget, magnitude's choice of weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config
from ..masks import Masks, check_fit, read_masks, weight_of
from ..models import prunable_layers
from ..paths import RunPaths
from ..storage import read_json
from .base import Decision, PruneContext

__all__ = ["Magnitude", "RandomPruning", "NoPruning", "magnitude_decision", "random_decision", "schedule_counts",
           "layer_target_counts", "layer_targets"]


def schedule_counts(total: int, frac: float, iteration: int) -> int:
    """Weights pruned in total after ``iteration`` iterations: round(total * (1 - (1-f)^i)).
    Pruning the difference each iteration keeps the final sparsity within one weight of
    1 - (1 - f)^N, without rounding error piling up."""
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


def magnitude_decision(weights: dict[str, torch.Tensor], masks: Masks, cfg: Config, iteration: int,
                       generator: torch.Generator, layer_targets: dict[str, int] | None = None) -> Masks:
    scores = {k: w.detach().abs() for k, w in weights.items()}
    return _select(scores, masks, cfg, iteration, layer_targets)


def random_decision(weights: dict[str, torch.Tensor], masks: Masks, cfg: Config, iteration: int,
                    generator: torch.Generator, layer_targets: dict[str, int] | None = None) -> Masks:
    scores = {k: torch.rand(w.shape, generator=generator) for k, w in weights.items()}
    return _select(scores, masks, cfg, iteration, layer_targets)


def layer_target_counts(reference: Masks) -> dict[str, int]:
    """Kept weights per layer of a reference mask set (for --match-layers)."""
    return {k: int(m.sum()) for k, m in reference.items()}


def layer_targets(cfg: Config, model: nn.Module, iteration: int) -> dict[str, int] | None:
    """--match-layers: the other run's kept count per layer at this iteration (or its final
    masks, reached geometrically, when its number of iterations differs)."""
    if not cfg.match_layers:
        return None
    ref = RunPaths(cfg.match_layers)
    per_iter = ref.masks(iteration)
    if per_iter.exists() and ref.config.exists() and read_json(ref.config).get("n_iter") == cfg.n_iter:
        return layer_target_counts(check_fit(model, read_masks(per_iter), complete=True))
    final = check_fit(model, read_masks(ref.final_masks), complete=True)
    frac = iteration / max(cfg.n_iter, 1)
    return {k: int(round(m.numel() * (float(m.float().mean()) ** frac))) for k, m in final.items()}


class _Ranked:
    """Rank the live weights after the SGD epochs by a score; prune the lowest."""

    trains, records, record_bytes = True, False, 0
    rule = staticmethod(magnitude_decision)

    def preflight(self, cfg: Config, model: nn.Module) -> None:
        if cfg.match_layers and cfg.n_iter:
            layer_targets(cfg, model, 1)  # a missing or unfitting reference run fails now, not after pretraining

    def begin(self, ctx: PruneContext) -> list:
        return []

    def decide(self, ctx: PruneContext) -> Decision:
        weights = {f"{n}.weight": weight_of(m).detach().cpu() for n, m in prunable_layers(ctx.model).items()}
        cpu_old = {k: v.cpu() for k, v in ctx.masks.items()}
        targets = layer_targets(ctx.cfg, ctx.model, ctx.iteration)
        gen = torch.Generator().manual_seed(ctx.decision_seed)
        return Decision(self.rule(weights, cpu_old, ctx.cfg, ctx.iteration, gen, targets))


class Magnitude(_Ranked):
    """Global L1 magnitude (docs/method.md §4)."""

    rule = staticmethod(magnitude_decision)


class RandomPruning(_Ranked):
    """The same schedule with uniformly random choices: the floor any method must beat."""

    rule = staticmethod(random_decision)


class NoPruning:
    """Keep everything. The rewind would discard the SGD epochs, so they are skipped."""

    trains, records, record_bytes = False, False, 0

    def preflight(self, cfg: Config, model: nn.Module) -> None:
        pass

    def begin(self, ctx: PruneContext) -> list:
        return []

    def decide(self, ctx: PruneContext) -> Decision:
        return Decision(ctx.masks)
