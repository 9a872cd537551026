"""Masks that every rank checks against rank 0's before anything is applied (NNI's users met masks
that silently disagreed across ranks; here a disagreement stops every rank with a MaskError naming
the layer)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..errors import MaskError
from .collectives import broadcast_tensor
from .env import is_dist, is_main, world_size

__all__ = ["agree_on_masks"]

Masks = dict[str, torch.Tensor]


def agree_on_masks(masks: Masks, tag: str = "") -> Masks:
    """Broadcast rank 0's masks; every rank checks that its own equal them before anything is
    applied, and all ranks raise MaskError together (naming the layer and ranks) if any differ.
    ``tag`` names the decision (``iter_01``) for whoever observes it."""
    if not is_dist():
        return masks
    keys = list(masks)
    ref_keys: list = [keys]
    dist.broadcast_object_list(ref_keys, src=0)
    names_ok = [None] * world_size()
    dist.all_gather_object(names_ok, ref_keys[0] == keys)
    if not all(names_ok):
        raise MaskError(f"ranks {[r for r, ok in enumerate(names_ok) if not ok]} hold masks for other layers than "
                        "rank 0; the masks were not applied. Every rank must build the same model")
    out: Masks = {}
    first_bad = len(keys)
    for i, k in enumerate(keys):
        mine = masks[k].to(torch.uint8)
        ref = broadcast_tensor(mine if is_main() else None, 0)
        if first_bad == len(keys) and not torch.equal(ref.cpu(), mine.cpu()):
            first_bad = i
        out[k] = ref.to(masks[k].device)
    report = [None] * world_size()
    dist.all_gather_object(report, first_bad)
    bad = sorted(r for r, b in enumerate(report) if b != len(keys))
    if bad:
        layer = keys[min(report[r] for r in bad)]
        raise MaskError(f"ranks {bad} disagree with rank 0 on the mask of {layer}; the masks were not applied. "
                        "This is a bug (or ranks running different code or data): report it with this message")
    return out
