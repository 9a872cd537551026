"""``--tensorboard``: the run's metrics as TensorBoard scalars, and |gamma| histograms.

Optional: it needs the ``tensorboard`` package (``pip install 'causalprune[tensorboard]'``). The
event files go to ``<run>/tensorboard`` and are written by rank 0 only. Every row that goes to
metrics.csv also becomes a scalar ``<phase>/<name>`` (losses, accuracies, percent pruned); each
pruning iteration adds ``sparsity/<layer>`` and the histograms ``gamma_abs/<layer>`` (all |gamma|
of the layer's live weights, zeros included) and ``log10_gamma_abs/<layer>`` (the nonzero ones:
|gamma| spans many decades, docs/method.md §2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from . import dist as ddp
from .errors import ConfigError
from .masks import Masks, layer_sparsity, sparsity

__all__ = ["TensorBoardLog", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'causalprune[tensorboard]' (or pip install tensorboard)"


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}; or drop --tensorboard") \
            from None
    return SummaryWriter


class TensorBoardLog:
    """A no-op unless ``enabled``; checks at construction that tensorboard can be imported."""

    def __init__(self, enabled: bool, folder: str | Path, n_prune: int = 1):
        self.enabled = bool(enabled)
        self.folder = Path(folder)
        self.n_prune = max(int(n_prune), 1)
        self._cls = _writer_class() if self.enabled else None
        self._writer = None

    @property
    def writer(self):
        """The SummaryWriter, opened on first use (after the run folder exists); None off rank 0."""
        if self._writer is None and self.enabled and ddp.is_main():
            self._writer = self._cls(str(self.folder))
        return self._writer

    def _step(self, phase: str, iteration: int, epoch: int) -> int:
        # One x-axis per tag: epochs for pre/post, recorded SGD epochs counted across iterations
        # for the pruning phase, and the iteration for per-iteration figures.
        if phase == "prune":
            return (int(iteration) - 1) * self.n_prune + int(epoch) if int(epoch) > 0 else int(iteration)
        return int(epoch)

    def scalar(self, phase: str, iteration: int, epoch: int, step: int, name: str, value: float) -> None:
        """Same arguments as ``RunState.log``."""
        if self.writer is not None:
            self.writer.add_scalar(f"{phase}/{name}", float(value), self._step(phase, iteration, epoch))

    def wrap(self, log: Callable[..., None]) -> Callable[..., None]:
        """``log`` followed by :meth:`scalar` (to put in place of ``RunState.log``)."""
        if not self.enabled:
            return log

        def both(*args, **kwargs):
            log(*args, **kwargs)
            self.scalar(*args, **kwargs)
        return both

    def iteration(self, it: int, masks: Masks, gammas: dict[str, torch.Tensor]) -> None:
        """Per-layer sparsity and |gamma| histograms of pruning iteration ``it``."""
        w = self.writer
        if w is None:
            return
        w.add_scalar("sparsity/all", sparsity(masks), it)
        for key, pct in layer_sparsity(masks).items():
            w.add_scalar(f"sparsity/{key}", pct, it)
        for key, g in gammas.items():
            g = g.detach().float().abs().reshape(-1).cpu()
            if g.numel():
                w.add_histogram(f"gamma_abs/{key}", g, it)
            nz = g[g > 0]
            if nz.numel():
                w.add_histogram(f"log10_gamma_abs/{key}", nz.log10(), it)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
