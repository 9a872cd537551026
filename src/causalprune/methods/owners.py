"""Which DDP rank fits which layer's Lasso, so that the per-layer fits of eq. (9) are spread.

With ``--scope layer`` every layer is an independent regression, so each one is fitted on one
rank (its *owner*) and the results are broadcast. Owners are chosen by size (largest layer
first, to the least-loaded rank), and each rank records only the layers it owns, so both the
recording memory and the Lasso time are split across ranks. ``--scope network`` is a single
regression: rank 0 fits it.

The decision does not depend on the number of ranks: in one process the layers are fitted in
model order, each drawing its visiting order from one shared generator. The owner of layer i
starts from that generator advanced past the i earlier fits (:func:`layer_generator`), so it
draws the same visiting order as the single process would.

This module only says who fits what and moves results; the fit itself is ``causal.py``'s.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..config import Config
from ..dist import broadcast_tensor, is_dist, rank, world_size
from ..errors import TrainingError
from ..solvers.blocks import visit_order

__all__ = ["assign_layers", "owned_layers", "layer_owners", "layer_generator", "from_owners"]


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


def owned_layers(masks: dict[str, torch.Tensor], cfg: Config) -> set[str] | None:
    """The layers this rank records and fits (None = all): with a per-layer Lasso each layer
    lives on one rank only, so the recording memory is split across ranks too."""
    if not is_dist() or cfg.scope != "layer":
        return None
    owners = assign_layers({k: int(m.sum()) for k, m in masks.items()}, world_size())
    return {k for k, r in owners.items() if r == rank()}


def layer_owners(held: list[str], sizes: dict[str, int], keys: list[str]) -> dict[str, int]:
    """Owner of every layer, from what each rank recorded (``held``: this rank's layers; ``sizes``:
    their live widths). When every rank recorded everything, the fits are balanced by size."""
    everyone: list = [None] * world_size()
    dist.all_gather_object(everyone, held)
    if all(set(h) == set(keys) for h in everyone):
        return assign_layers(sizes, world_size())
    owners = {}
    for k in keys:
        ranks = [r for r, h in enumerate(everyone) if k in h]
        if not ranks:
            raise TrainingError(f"no rank recorded {k}; every rank must run the same configuration")
        owners[k] = ranks[0]
    return owners


def layer_generator(base: torch.Generator, index: int, n: int, cfg: Config) -> torch.Generator:
    """A copy of ``base`` in the state the single-process loop leaves it in before fitting the
    ``index``-th layer: each earlier reference-solver fit drew ``visit_order(n, epochs)``."""
    g = torch.Generator(device=base.device)
    g.set_state(base.get_state())
    if cfg.solver != "exact" and n > 0:
        for _ in range(index):
            visit_order(n, int(cfg.lasso_epochs), True, g)
    return g


def from_owners(keys: list[str], owners: dict[str, int], local: dict[str, torch.Tensor],
                device: torch.device) -> dict[str, torch.Tensor]:
    """Every layer's tensor on every rank, each sent by the rank that owns it."""
    return {k: broadcast_tensor(local.get(k), owners[k]).to(device) for k in keys}
