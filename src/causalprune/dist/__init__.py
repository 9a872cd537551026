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
  the recorder stores as L_t (docs/method.md §7: never rank 0's local loss). Equal in exact
  arithmetic, not bit for bit: the batch sum is split into W partial sums plus an all-reduce,
  so parameters drift from a one-process run in the last float bits (tests/test_ddp.py).
* The per-layer Lasso fits are spread over the ranks (``distributed_lasso.py``); masks are
  broadcast from rank 0 and checked on every rank before they are applied
  (:func:`agree_on_masks`). Only rank 0 writes the run folder.
"""

from __future__ import annotations

from .collectives import MeanLossOverRanks, broadcast_tensor, mean_over_ranks, sum_over_ranks, sync_buffers
from .env import (barrier, check_shared, comm_device, init_from_env, is_dist, is_main, local_device, local_rank,
                  main_first, rank, resolve_device, wrap_model, wrap_optimizer, world_size)
from .shard import batch_loss, local_batches, rank_seed, shard_bounds, subset_loss

__all__ = ["is_dist", "rank", "world_size", "local_rank", "is_main", "barrier", "init_from_env", "resolve_device",
           "local_device", "comm_device", "wrap_model", "wrap_optimizer", "main_first", "check_shared",
           "rank_seed", "shard_bounds", "local_batches", "batch_loss", "subset_loss", "mean_over_ranks",
           "sum_over_ranks", "sync_buffers", "broadcast_tensor", "MeanLossOverRanks"]
