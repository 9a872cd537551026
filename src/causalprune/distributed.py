"""Process-group helpers. Without ``torchrun`` every function is a cheap no-op, so the
single-process code path is the multi-process one with a world of size 1."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .masks import Masks

__all__ = ["is_dist", "rank", "world_size", "is_main", "barrier", "wrap_optimizer", "agree_on_masks",
           "causal_decision"]


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def wrap_optimizer(opt: torch.optim.Optimizer, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Single process: the optimizer itself."""
    return opt


def agree_on_masks(masks: Masks) -> Masks:
    """Single process: the masks themselves."""
    return masks


def causal_decision(rec, cfg, generator):
    from .methods import causal_decision as decide

    return decide(rec, cfg, generator)

