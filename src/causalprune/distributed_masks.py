"""Decisions shared by all DDP ranks: tensors broadcast with their shape, and masks that every
rank checks against rank 0's before anything is applied (NNI's users met masks that silently
disagreed across ranks; here a disagreement stops every rank with a MaskError naming the layer).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from .distributed import DEBUG_MASKS_ENV, comm_device, is_dist, is_main, rank, world_size
from .errors import MaskError
from .masks import Masks, save_masks

__all__ = ["broadcast_tensor", "debug_dump_masks", "agree_on_masks"]

_DTYPES = [torch.uint8, torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32,
           torch.float64]


def broadcast_tensor(t: torch.Tensor | None, src: int) -> torch.Tensor:
    """Send ``t`` from rank ``src`` to all ranks (shape and dtype travel in a header); returns
    the tensor on :func:`comm_device` on every rank (``t`` itself in one process)."""
    if not is_dist():
        assert t is not None
        return t
    dev = comm_device()
    header = torch.zeros(10, dtype=torch.int64, device=dev)
    if rank() == src:
        t = t.detach().contiguous()
        if t.dim() > 8:
            raise ValueError("broadcast_tensor supports at most 8 dimensions")
        header[0], header[1] = _DTYPES.index(t.dtype), t.dim()
        header[2:2 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    dist.broadcast(header, src)
    h = header.tolist()
    shape, dtype = tuple(h[2:2 + h[1]]), _DTYPES[h[0]]
    buf = t.to(dev, copy=True) if rank() == src else torch.empty(shape, dtype=dtype, device=dev)
    dist.broadcast(buf, src)
    return buf


def debug_dump_masks(tag: str, masks: Masks) -> None:
    """With ``$CAUSALPRUNE_DEBUG_RANK_MASKS`` set to a folder, save this rank's masks there as
    ``rank<r>-<tag>.safetensors`` (each rank its own file; never inside the run folder)."""
    folder = os.environ.get(DEBUG_MASKS_ENV)
    if folder and tag:
        save_masks(Path(folder) / f"rank{rank()}-{tag}.safetensors", masks)


def agree_on_masks(masks: Masks, tag: str = "") -> Masks:
    """Broadcast rank 0's masks; every rank checks that its own equal them before anything is
    applied, and all ranks raise MaskError together (naming the layer and ranks) if any differ."""
    debug_dump_masks(tag, masks)
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
