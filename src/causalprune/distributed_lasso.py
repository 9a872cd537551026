"""The per-layer Lasso fits of eq. (9) spread over DDP ranks, with the single-process masks.

With ``--scope layer`` every layer is an independent regression, so each one is fitted on one
rank (its *owner*) and the results are broadcast. Owners are chosen by size (largest layer
first, to the least-loaded rank), and each rank records only the layers it owns, so both the
recording memory and the Lasso time are split across ranks.

The result does not depend on the number of ranks: in one process ``methods.causal_decision``
fits the layers in model order, drawing each fit's visiting order from one shared generator.
The owner of layer i starts from that generator advanced past the i earlier fits
(:func:`layer_generator`), so it draws the same visiting order as the single process would.
``--scope network`` is a single regression: rank 0 fits it and broadcasts the result.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .config import Config
from .distributed import is_dist, rank, world_size
from .distributed_masks import broadcast_tensor
from .errors import TrainingError
from .masks import Masks
from .solvers.blocks import visit_order

__all__ = ["assign_layers", "layer_generator", "fit_layers", "distributed_causal_decision"]


def assign_layers(sizes: dict[str, int], world: int) -> dict[str, int]:
    """Owner rank of each layer: largest first, each to the rank with the least work so far
    (ties to the lowest rank). Deterministic, so every rank computes the same assignment."""
    load = [0] * world
    owners: dict[str, int] = {}
    for key in sorted(sizes, key=lambda k: -sizes[k]):  # sorted() is stable: model order breaks ties
        r = min(range(world), key=lambda i: (load[i], i))
        owners[key] = r
        load[r] += sizes[key]
    return {k: owners[k] for k in sizes}


def layer_generator(base: torch.Generator, index: int, n: int, cfg: Config) -> torch.Generator:
    """A copy of ``base`` in the state the single-process loop leaves it in before fitting the
    ``index``-th layer: each earlier reference-solver fit drew ``visit_order(n, epochs)``."""
    g = torch.Generator(device=base.device)
    g.set_state(base.get_state())
    if cfg.solver != "exact" and n > 0:
        for _ in range(index):
            visit_order(n, int(cfg.lasso_epochs), True, g)
    return g


class _OneLayer:
    """A view of a recorder that exposes a single layer slot (all else is the recorder's)."""

    def __init__(self, rec, slot):
        self._rec = rec
        self.slots = [slot]

    def __getattr__(self, name):
        return getattr(self._rec, name)


def _n_samples(rec, cfg: Config) -> int:
    return int(rec.targets(lag=2 if cfg.momentum > 0 else 1).numel())


def fit_layers(rec, cfg: Config, generator: torch.Generator, order: list[str], slots
               ) -> tuple[Masks, dict[str, torch.Tensor]]:
    """Fit the layers of ``slots`` one by one, each exactly as the single-process loop would
    (``order``: every layer's key in model order, for the generator state)."""
    from .methods import causal_decision

    n = _n_samples(rec, cfg)
    keep: Masks = {}
    gammas: dict[str, torch.Tensor] = {}
    for slot in slots:
        gen = layer_generator(generator, order.index(slot.key), n, cfg)
        k, g = causal_decision(_OneLayer(rec, slot), cfg.replace(scope="layer"), gen)
        keep.update(k)
        gammas.update(g)
    return keep, gammas


def _owners(rec, keys: list[str]) -> dict[str, int]:
    """Owner of every layer, from what each rank recorded."""
    mine = [s.key for s in rec.slots]
    held: list = [None] * world_size()
    dist.all_gather_object(held, mine)
    if all(set(h) == set(keys) for h in held):  # every rank recorded everything: balance the fits
        return assign_layers({s.key: s.stop - s.start for s in rec.slots}, world_size())
    owners = {}
    for k in keys:
        ranks = [r for r, h in enumerate(held) if k in h]
        if not ranks:
            raise TrainingError(f"no rank recorded {k}; every rank must run the same configuration")
        owners[k] = ranks[0]
    return owners


def distributed_causal_decision(rec, cfg: Config, generator: torch.Generator
                                ) -> tuple[Masks, dict[str, torch.Tensor]]:
    """(keep masks, |gamma| per layer) for every layer, identical on all ranks."""
    from .methods import causal_decision

    if not is_dist():
        return causal_decision(rec, cfg, generator)
    keys = list(getattr(rec, "layer_keys", None) or [s.key for s in rec.slots])
    if cfg.scope == "network":
        owners = {k: 0 for k in keys}
        local = causal_decision(rec, cfg, generator) if rank() == 0 else ({}, {})
    else:
        owners = _owners(rec, keys)
        local = fit_layers(rec, cfg, generator, keys, [s for s in rec.slots if owners[s.key] == rank()])
        # Leave the caller's generator where the single-process loop would.
        generator.set_state(layer_generator(generator, len(keys), _n_samples(rec, cfg), cfg).get_state())
    keep: Masks = {}
    gammas: dict[str, torch.Tensor] = {}
    for k in keys:
        keep[k] = broadcast_tensor(local[0].get(k), owners[k]).to(rec.device)
        gammas[k] = broadcast_tensor(local[1].get(k), owners[k]).to(rec.device)
    return keep, gammas
