"""Reductions and broadcasts over the ranks; each is the identity in one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .env import comm_device, is_dist, rank, world_size

__all__ = ["mean_over_ranks", "sum_over_ranks", "sync_buffers", "broadcast_tensor", "MeanLossOverRanks"]

_DTYPES = [torch.uint8, torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32,
           torch.float64]


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over ranks (identity in one process); same device as ``t``."""
    if not is_dist():
        return t
    buf = t.detach().to(comm_device(), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return (buf / world_size()).to(t.device)


def sum_over_ranks(*values: float) -> list[float]:
    """Sums over ranks of a few numbers (float64); the numbers themselves in one process."""
    if not is_dist():
        return list(values)
    buf = torch.tensor(values, dtype=torch.float64, device=comm_device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.tolist()


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks; masks excluded
    (they are agreed on explicitly). A no-op for models without such buffers."""
    if not is_dist():
        return
    model = getattr(model, "module", model)
    bufs = [b for n, b in model.named_buffers() if b.is_floating_point() and not n.endswith("_mask")]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1).to(comm_device(), torch.float64) for b in bufs])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    i = 0
    for b in bufs:
        b.copy_(flat[i:i + b.numel()].view_as(b))
        i += b.numel()


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


class MeanLossOverRanks:
    """A step callback that hands ``inner`` the mean over ranks of each step's loss (float64).

    Under DDP, dtheta comes from the all-reduced gradient of the whole global batch, so the loss
    that pairs with it in eq. (8) must be the global one too, never rank 0's local loss
    (docs/method.md, "The loss under DDP"). In one process it passes the loss on unchanged.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    @torch.no_grad()
    def after_step(self, loss: torch.Tensor) -> None:
        loss = loss.detach().to(torch.float64)
        if is_dist():
            loss = loss.clone()
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss /= dist.get_world_size()
        self.inner.after_step(loss)
