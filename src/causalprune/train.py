"""One training loop, read top to bottom. Recording, the DDP reduction of the recorded loss and
logging hook in as step callbacks, and the loss as ``loss_fn``, so that the loop itself stays simple.
It knows nothing of pruning methods or solvers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import dist as ddp
from .errors import TrainingError

__all__ = ["StepCallback", "LossFn", "EpochResult", "train_epoch", "global_batch_loss", "first_samples_loss", "evaluate",
           "EarlyStopping", "epoch_seed"]


class StepCallback(Protocol):
    def after_step(self, loss: torch.Tensor) -> None: ...


# (model output, labels, global batch size) -> (loss to train on, loss handed to the callbacks)
LossFn = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochResult:
    loss: float
    steps: int


def epoch_seed(seed: int, *parts: int) -> int:
    """A seed for one epoch derived from the run seed and the epoch's position in the protocol.
    Every epoch reseeds from it, so a resumed run replays exactly the batches (and dropout
    masks) of the run that was interrupted."""
    h = seed & 0xFFFFFFFF
    for p in parts:
        h = (h * 1_000_003 + int(p) + 7) % (2**31 - 1)
    return h


def global_batch_loss(out: torch.Tensor, y: torch.Tensor, n_global: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to train on, loss the callbacks see): both the mean cross-entropy of the global batch,
    as this rank's contribution (dist/shard.py explains the scaling)."""
    loss = ddp.batch_loss(out, y, n_global)
    return loss, loss


def first_samples_loss(k: int) -> LossFn:
    """A ``loss_fn`` that trains on the whole batch but hands the callbacks the mean loss of its
    first ``k`` samples (``--loss-samples``; same forward pass, so still at theta_t)."""

    def loss_fn(out: torch.Tensor, y: torch.Tensor, n_global: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ddp.batch_loss(out, y, n_global), ddp.subset_loss(out, y, n_global, k)

    return loss_fn


def train_epoch(model: nn.Module, batches, optimizer: torch.optim.Optimizer, *, seed: int,
                loss_fn: LossFn = global_batch_loss, callbacks: Iterable[StepCallback] = (), max_steps: int = 0,
                desc: str = "train", step_offset: int = 0) -> EpochResult:
    """One epoch of minibatch training. ``seed`` fixes batch order, augmentation and dropout.

    The loss of each step is the mean cross-entropy of that minibatch at the parameters
    *before* the step (eq. 8), computed by the step's own forward pass; the callbacks get the
    second loss of ``loss_fn`` right after ``optimizer.step()``. Under DDP every rank trains on its
    share of the same global batch, and DDP averages the gradients.
    """
    model.train()
    torch.manual_seed(ddp.rank_seed(seed))  # DDP: each rank its own dropout stream
    callbacks = list(callbacks)
    n = len(batches) if not max_steps else min(len(batches), max_steps)
    losses = torch.zeros(n, dtype=torch.float64)
    pending: list[torch.Tensor] = []
    bar = tqdm(total=n, desc=desc, leave=False, disable=None if ddp.is_main() else True, unit="step")
    for step, (x, y, n_global) in enumerate(ddp.local_batches(batches, seed)):
        if step >= n:
            break
        loss, seen = loss_fn(model(x), y, n_global)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for cb in callbacks:
            cb.after_step(seen)
        pending.append(loss.detach())
        # Check for divergence without a device sync at every step (every 50 steps and at the end).
        if (step + 1) % 50 == 0 or step + 1 == n:
            _settle(pending, losses, step + 1, step_offset, desc)
        bar.update(1)
    bar.close()
    ddp.sync_buffers(model)
    return EpochResult(float(losses.mean()) if n else math.nan, n)


def _settle(pending: list[torch.Tensor], losses: torch.Tensor, done: int, step_offset: int, desc: str) -> None:
    """Move the pending step losses to ``losses[done - len(pending):done]``, checked finite."""
    # DDP: the global batch losses (mean over ranks), so every rank takes the same decisions.
    chunk = list(ddp.mean_over_ranks(torch.stack(pending).double()).unbind())
    _check_finite(chunk, step_offset + done - len(chunk), desc)
    losses[done - len(chunk): done] = torch.stack(chunk).cpu()
    pending.clear()


def _check_finite(losses: list[torch.Tensor], first_step: int, desc: str) -> None:
    if not losses:
        return
    stacked = torch.stack(losses)
    bad = ~torch.isfinite(stacked)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        # Steps are counted from 1 in the message, as the progress bar counts them.
        raise TrainingError(f"{desc}: the loss became {float(stacked[i])} at step {first_step + i + 1} of the epoch; "
                            "the last good checkpoint is kept. Lower the learning rate and rerun.")


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> tuple[float, float]:
    """(mean loss, accuracy in percent) over all batches, in eval mode."""
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y, _ in ddp.local_batches(batches, 0):  # DDP: each rank its share, summed below
        out = model(x)
        loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        total += y.numel()
    loss_sum, correct, total = ddp.sum_over_ranks(loss_sum, correct, total)
    return loss_sum / max(total, 1), 100.0 * correct / max(total, 1)


@dataclass
class EarlyStopping:
    """Stop when the training loss has not improved by more than ``min_delta`` on the best
    value for ``patience`` epochs (paper Appendix C)."""

    patience: int
    min_delta: float
    best: float = math.inf
    bad_epochs: int = 0

    def update(self, loss: float) -> bool:
        """Record one epoch's loss; return True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.bad_epochs = float(d["best"]), int(d["bad_epochs"])
