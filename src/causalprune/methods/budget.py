"""``--method causal-budget`` (ours, not the paper's; docs/method.md §4): causal pruning's per-layer
count, magnitude's choice of weights.

Each iteration fits the same per-layer Lasso as ``causal`` (eq. 9) and takes from it only *how
many* live weights each layer loses, its number of zero γ. It then prunes that many of the layer's
smallest-magnitude live weights after the SGD epochs, and goes on as Algorithm 1 does (rewind,
repeat). This separates the two things a causal decision does: how much it prunes in each layer,
and which weights it picks there. Unlike ``magnitude --match-layers RUN`` it needs no earlier causal
run, and it follows the budget of its own masks iteration by iteration.
"""

from __future__ import annotations

import torch

from ..masks import weight_of
from ..models import prunable_layers
from .base import Decision, PruneContext
from .baselines import magnitude_decision
from .causal import Causal

__all__ = ["CausalBudget", "causal_budget"]


def causal_budget(causal_keep: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """Live weights each layer keeps under the causal decision: live minus its zero-γ count."""
    return {k: int((causal_keep[k].cpu().bool() & m.cpu().bool()).sum()) for k, m in masks.items()}


class CausalBudget(Causal):
    """The causal recording and Lasso for the per-layer budget; magnitude within each layer."""

    def decide(self, ctx: PruneContext) -> Decision:
        causal = super().decide(ctx)
        budget = causal_budget(causal.keep, ctx.masks)
        weights = {f"{n}.weight": weight_of(m).detach().cpu() for n, m in prunable_layers(ctx.model).items()}
        masks = {k: v.cpu() for k, v in ctx.masks.items()}
        gen = torch.Generator().manual_seed(ctx.decision_seed)  # unused by magnitude; the rule's signature
        keep = magnitude_decision(weights, masks, ctx.cfg, ctx.iteration, gen, layer_targets=budget)
        return Decision(keep, causal.gammas)
