"""Causal pruning (paper §3): record the SGD epochs, fit eq. (9) per layer, keep the weights with gamma != 0.

:func:`causal_decision` is the one causal decision. ``Experiment`` (through :class:`Causal`),
``CausalPruner``, the Lightning callback and DDP all reach it; the online solver, which fits while
training, shares its last step, :func:`keep_from_gammas`. Under DDP only *where* each layer is
fitted changes (owners.py), never the decision.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..dist import MeanLossOverRanks, is_dist, rank
from ..record.features import LayerFeatures, expand_keep
from ..record.online import OnlineCausal
from ..record.recorder import Recorder
from ..solvers import SOLVERS, LassoSchedule
from ..units import format_bytes, parse_bytes
from . import owners
from .base import Decision, PruneContext

__all__ = ["Causal", "causal_decision", "fit_layers", "fit_gammas", "keep_from_gammas"]


def fit_gammas(feats: list[LayerFeatures], y: torch.Tensor, cfg: Config, generator: torch.Generator
               ) -> list[list[torch.Tensor]]:
    """gamma per layer (one tensor per feature block) from ``cfg.solver``: one Lasso per layer,
    or one over the whole network (``--scope network``, paper §5 iii), split back per layer."""
    solve = SOLVERS[cfg.solver]
    sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=cfg.lasso_epochs)

    def fit(blocks):
        return solve(blocks, y, cfg.l1_coeff, schedule=sched, generator=generator)

    if cfg.scope == "layer":
        return [fit(lf.blocks) for lf in feats]
    flat = fit([b for lf in feats for b in lf.blocks])
    per_layer, i = [], 0
    for lf in feats:
        per_layer.append(flat[i:i + len(lf.blocks)])
        i += len(lf.blocks)
    return per_layer


def keep_from_gammas(feats: list[LayerFeatures], per_layer: list[list[torch.Tensor]]) -> Decision:
    """Keep a weight iff any of its gammas is nonzero (eqs. 9-10; eq. 19 with momentum), and
    |gamma| per weight or group (the largest of its blocks) for logging."""
    keep = {lf.key: expand_keep(lf, g) for lf, g in zip(feats, per_layer)}
    mags = {lf.key: torch.stack([x.abs() for x in g]).amax(0) for lf, g in zip(feats, per_layer)}
    return Decision(keep, mags)


def _targets(rec: Recorder, cfg: Config) -> torch.Tensor:
    """y of eq. (8), or of the momentum model (eq. 17: one step later)."""
    return rec.targets(lag=2 if cfg.momentum > 0 else 1)


def _decide(rec: Recorder, cfg: Config, generator: torch.Generator, slots=None) -> Decision:
    feats = rec.features(momentum=cfg.momentum > 0, granularity=cfg.granularity, slots=slots)
    y = _targets(rec, cfg).to(rec.device)
    return keep_from_gammas(feats, fit_gammas(feats, y, cfg, generator))


def fit_layers(rec: Recorder, cfg: Config, generator: torch.Generator, slots) -> Decision:
    """The per-layer decision of ``slots`` only, each layer exactly as the one-process loop fits it:
    from ``generator`` advanced past the fits of the layers before it in model order."""
    keys = list(rec.layer_keys)
    n = int(_targets(rec, cfg).numel())
    keep, mags = {}, {}
    for slot in slots:
        gen = owners.layer_generator(generator, keys.index(slot.key), n, cfg)
        part = _decide(rec, cfg.replace(scope="layer"), gen, slots=[slot])
        keep.update(part.keep)
        mags.update(part.gammas)
    return Decision(keep, mags)


def causal_decision(rec: Recorder, cfg: Config, generator: torch.Generator) -> Decision:
    """The causal decision on a recording: keep masks and |gamma| for every layer, identical on all ranks.

    In one process the layers are fitted in model order. Under DDP each layer is fitted by its
    owner from the generator state the single process would have reached, then broadcast.
    """
    if not is_dist():
        return _decide(rec, cfg, generator)
    keys = list(rec.layer_keys)
    if cfg.scope == "network":
        who = {k: 0 for k in keys}
        local = _decide(rec, cfg, generator) if rank() == 0 else Decision({}, {})
    else:
        who = owners.layer_owners([s.key for s in rec.slots], {s.key: s.stop - s.start for s in rec.slots}, keys)
        n = int(_targets(rec, cfg).numel())
        local = fit_layers(rec, cfg, generator, [s for s in rec.slots if who[s.key] == rank()])
        # Leave the caller's generator where the single-process loop would.
        generator.set_state(owners.layer_generator(generator, len(keys), n, cfg).get_state())
    return Decision(owners.from_owners(keys, who, local.keep, rec.device),
                    owners.from_owners(keys, who, local.gammas, rec.device))


class Causal:
    """``--method causal``: a recorder (or the online solver) on the SGD epochs, then eq. (9)."""

    trains, records = True, True

    def __init__(self) -> None:
        self.record_bytes = 0

    def preflight(self, cfg: Config, model) -> None:
        pass

    def begin(self, ctx: PruneContext) -> list:
        cfg = ctx.cfg
        if cfg.solver == "online":  # streams eq. (9): stores nothing per step
            rec = OnlineCausal(ctx.model, ctx.masks, cfg, device=ctx.device)
            ctx.log(f"iteration {ctx.iteration}: online Lasso over {rec.width:,} live weights "
                    f"= {format_bytes(rec.held_bytes())}")
        else:
            steps = cfg.n_prune * ctx.steps_per_epoch
            budget = parse_bytes(cfg.record_budget) if cfg.record_budget else None
            rec = Recorder(ctx.model, ctx.masks, lr=cfg.lr_prune, max_steps=steps, dtype=cfg.record_dtype,
                           device=ctx.device, budget_bytes=budget, layers=owners.owned_layers(ctx.masks, cfg),
                           spill_path=ctx.spill_path)
            ctx.log(f"iteration {ctx.iteration}: {rec.describe()}")
        ctx.recording = rec
        return [MeanLossOverRanks(rec)]  # eq. (8) pairs dtheta with the global batch's loss

    def decide(self, ctx: PruneContext) -> Decision:
        rec = ctx.recording
        if isinstance(rec, OnlineCausal):
            decision = keep_from_gammas(rec.layers, rec.gammas())
        else:
            decision = causal_decision(rec, ctx.cfg, torch.Generator().manual_seed(ctx.lasso_seed))
        self.record_bytes = rec.held_bytes()
        return decision
