"""Multi-process training under ``torchrun`` (DDP). Without a process group every function is a
cheap no-op, so the single-process code path is the multi-process one with a world of size 1.

How a run is split (world W, global batch B = ``--batch-size``):

* Every rank walks the *same* sequence of global batches (the plan is a pure function of the
  seed) and trains on its contiguous share of each one (:func:`local_batches`), so the data seen
  per optimizer step equals the single-process run's.
* Gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel` (its bucketed
  all-reduce overlaps the backward pass). Each rank's loss is ``sum over its share * W / B``
  (:func:`batch_loss`): the DDP average of those gradients is then the gradient of the global
  batch's mean loss, even when the shares differ in size (last partial batch, B not divisible
  by W), and the mean over ranks of the per-rank losses is the global mean loss, which is what
  the recorder stores as L_t (method-facts §7: never rank 0's local loss). Equal in exact
  arithmetic, not bit for bit: the batch sum is split into W partial sums plus an all-reduce,
  so parameters drift from a one-process run in the last float bits (tests/test_ddp.py).
* The per-layer Lasso fits are spread over the ranks (``distributed_lasso.py``); masks are
  broadcast from rank 0 and checked on every rank before they are applied
  (:func:`agree_on_masks`). Only rank 0 writes the run folder.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .masks import Masks

__all__ = ["is_dist", "rank", "world_size", "local_rank", "is_main", "barrier", "init_from_env",
           "local_device", "comm_device", "wrap_model", "wrap_optimizer", "rank_seed", "shard_bounds",
           "local_batches", "batch_loss", "subset_loss", "mean_over_ranks", "sum_over_ranks", "sync_buffers",
           "main_first", "check_shared", "broadcast_tensor", "agree_on_masks", "debug_dump_masks", "recorded_layers",
           "causal_decision", "DEBUG_MASKS_ENV"]

#: Set to a folder to make every rank save the masks it is about to apply (for tests/debugging).
DEBUG_MASKS_ENV = "CAUSALPRUNE_DEBUG_RANK_MASKS"


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _nccl() -> bool:
    return is_dist() and dist.get_backend() == "nccl"


def comm_device() -> torch.device:
    """Where collective tensors must live: the rank's GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


def barrier() -> None:
    if _nccl():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    elif is_dist():
        dist.barrier()


def init_from_env(device: str = "auto") -> bool:
    """Join the process group described by torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); True when running distributed (also with one process under
    torchrun, so ``--nproc_per_node 1`` exercises the multi-process path). NCCL when the run uses CUDA, gloo
    otherwise (``CAUSALPRUNE_DIST_BACKEND`` overrides). Safe to call more than once."""
    if is_dist():
        return True
    if "WORLD_SIZE" not in os.environ:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing and int(os.environ["WORLD_SIZE"]) <= 1:
        return False  # not torchrun; under torchrun even one process takes the DDP path
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not; start multi-process runs with "
                          "`torchrun --nproc_per_node N -m causalprune run ...`")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    kwargs = {}
    if use_cuda:
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank()} but only {torch.cuda.device_count()} GPUs are visible; "
                              "use --nproc_per_node <= the number of GPUs per node")
        torch.cuda.set_device(local_rank())
        kwargs["device_id"] = torch.device("cuda", local_rank())
    backend = os.environ.get("CAUSALPRUNE_DIST_BACKEND") or ("nccl" if use_cuda else "gloo")
    # Generous: the other ranks wait in a collective while one rank fits its largest layer.
    minutes = float(os.environ.get("CAUSALPRUNE_DIST_TIMEOUT_MIN", "120"))
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=minutes), **kwargs)
    atexit.register(_shutdown)
    return True


def _shutdown() -> None:
    if is_dist():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Under DDP, ``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``)."""
    if is_dist() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank())
    return device


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to train through: ``model`` itself, or a DDP wrapper around it (same parameters).

    Call after the masks are in place (``weight_orig``/``weight_mask``): DDP registers the
    parameters that exist when it is built. On CUDA, BatchNorm becomes SyncBatchNorm so that batch
    statistics are those of the global batch (as in a single process); on CPU (gloo) BatchNorm
    keeps per-rank statistics and :func:`sync_buffers` averages its running buffers every epoch.
    """
    if not is_dist():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # No buffer broadcast at every forward: the masks are buffers as large as the weights, re-sending
    # them would double the traffic, and agree_on_masks() checks them explicitly. (Buffers are
    # still synced once, when DDP is built.) Newer torch names the option forward_sync_buffers.
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else {"broadcast_buffers": False}
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def wrap_optimizer(opt: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer itself: DDP (see :func:`wrap_model`) already all-reduces the gradients."""
    return opt


def rank_seed(seed: int) -> int:
    """Seed for dropout and other in-model randomness: rank 0 keeps ``seed`` (so a 1-process run is
    unchanged); other ranks get distinct streams, else their shares would share dropout masks."""
    r = rank()
    return seed if r == 0 else (seed * 1_000_003 + 7919 * r + 17) % (2**31 - 1)


def shard_bounds(n: int, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """Rank ``r``'s contiguous share ``[lo, hi)`` of a batch of ``n`` samples (sizes differ by <= 1)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    base, extra = divmod(n, w)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def local_batches(batches, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(x, y, n_global) of this rank's share of every global batch of ``batches.epoch(seed)``."""
    w = world_size()
    for x, y in batches.epoch(seed):
        n = int(y.shape[0])
        if w == 1:
            yield x, y, n
        else:
            lo, hi = shard_bounds(n)
            yield x[lo:hi], y[lo:hi], n


def batch_loss(out: torch.Tensor, y: torch.Tensor, n_global: int) -> torch.Tensor:
    """Mean cross-entropy of the global batch, as this rank's contribution (see module doc)."""
    if not is_dist():
        return F.cross_entropy(out, y)
    return F.cross_entropy(out, y, reduction="sum") * (world_size() / n_global)


def subset_loss(out: torch.Tensor, y: torch.Tensor, n_global: int, k: int) -> torch.Tensor:
    """Mean cross-entropy of the first ``k`` samples of the global batch (all of it when smaller),
    detached, as this rank's contribution: the mean over ranks (what the recorder stores) is that
    subset's mean loss. ``--loss-samples`` uses it to record a smaller-sample L_t than the batch the
    step trains on, as the authors' DDP runs did with rank 0's local loss (method-facts §1)."""
    k = min(k, n_global)
    lo, hi = shard_bounds(n_global)  # (0, n_global) in one process
    part = slice(0, max(0, min(hi, k) - lo))  # this rank's samples among the global first k
    return batch_loss(out.detach()[part], y[part], k)


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


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. a data download), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def check_shared(path: str | Path) -> None:
    """Every rank reads what rank 0 writes (the rewind and resume checkpoints): refuse early when a
    rank cannot see the run folder (several nodes without a shared filesystem)."""
    if is_dist() and not Path(path).exists():
        raise ConfigError(f"rank {rank()} cannot see {path}, which rank 0 wrote; with several nodes, --out must be "
                          "a folder on a filesystem that every node shares")


def broadcast_tensor(t: torch.Tensor | None, src: int) -> torch.Tensor:
    """Send ``t`` (any shape and dtype) from rank ``src`` to every rank (distributed_masks.py)."""
    from .distributed_masks import broadcast_tensor as impl

    return impl(t, src)


def debug_dump_masks(tag: str, masks: Masks) -> None:
    """Save this rank's masks under ``$CAUSALPRUNE_DEBUG_RANK_MASKS`` (distributed_masks.py)."""
    from .distributed_masks import debug_dump_masks as impl

    impl(tag, masks)


def agree_on_masks(masks: Masks, tag: str = "") -> Masks:
    """Rank 0's masks, after every rank checked that its own equal them (distributed_masks.py)."""
    from .distributed_masks import agree_on_masks as impl

    return impl(masks, tag)


def recorded_layers(masks: Masks, cfg) -> set[str] | None:
    """The layers this rank records and fits (None = all): with a per-layer Lasso each layer
    lives on one rank only, so the recording memory is split across ranks too."""
    if not is_dist() or cfg.scope != "layer":
        return None
    from .distributed_lasso import assign_layers

    owners = assign_layers({k: int(m.sum()) for k, m in masks.items()}, world_size())
    return {k for k, r in owners.items() if r == rank()}


def causal_decision(rec, cfg, generator: torch.Generator):
    """``methods.causal_decision`` with the per-layer fits spread over the ranks."""
    from .distributed_lasso import distributed_causal_decision

    return distributed_causal_decision(rec, cfg, generator)
