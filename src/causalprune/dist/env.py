"""Who this process is in a torchrun job, and how it joins the process group.

Without a process group every function is a cheap no-op, so the single-process code path is the
multi-process one with a world of size 1.
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
from torch import nn

from ..errors import ConfigError

__all__ = ["is_dist", "rank", "world_size", "local_rank", "is_main", "barrier", "init_from_env", "resolve_device",
           "local_device", "comm_device", "wrap_model", "wrap_optimizer", "main_first", "check_shared"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the GPU when one is visible, else the CPU; ``cuda`` without a GPU is refused."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
