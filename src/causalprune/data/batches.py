"""The two input pipelines behind ``Batches``.

* :class:`DeviceBatches` keeps the whole set as one integer tensor on the training device and
  gathers, converts, flips, resizes and normalises whole batches there. No worker processes,
  no per-sample Python: the fast path for small data sets.
* :class:`LoaderBatches` feeds a ``torch.utils.data.DataLoader`` (``workers`` processes, pinned
  memory on CUDA) that only decodes to uint8; the same :class:`Finisher` then runs on the device.

An epoch is a pure function of its seed (:func:`epoch_plan`): the order *and* the flips are
drawn afresh from ``torch.Generator().manual_seed(seed)`` every epoch. Both pipelines consume
the same plan and the same finisher, so they produce identical batches, and a run killed
mid-way resumes exactly. Augmented tensors are never cached (the paper's code cached them,
freezing every flip; docs/method.md §7).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .sets import ArraySet, clean_worker_error

__all__ = ["Finisher", "epoch_plan", "DeviceBatches", "LoaderBatches"]


class Finisher:
    """Stored batch (N, C, h, w) -> float32 normalised (N, C, size, size) on ``device``."""

    def __init__(self, mean, std, scale: float, stored_size: int, size: int, device) -> None:
        self.device = torch.device(device)
        mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x * scale - mean) / std as one multiply-add: x * a + b.
        self.a = (scale / std).to(self.device)
        self.b = (-mean / std).to(self.device)
        self.stored_size = stored_size
        self.size = size

    def __call__(self, x: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        x = torch.addcmul(self.b, x.to(torch.float32), self.a)  # out of place: x may alias storage
        if flips is not None:
            flips = flips.to(self.device, non_blocking=True).view(-1, 1, 1, 1)
            x = torch.where(flips, x.flip(3), x)
        if self.size != self.stored_size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.size < self.stored_size)
        return x


def epoch_plan(n: int, seed: int, shuffle: bool, flip: bool, crop_seeds: bool = False):
    """(order, flips or None, per-sample seeds or None) of one epoch, all drawn on the CPU.

    ``flips[j]`` and ``seeds[j]`` belong to the j-th sample *of the epoch* (``order[j]``).
    """
    if not shuffle:
        return torch.arange(n), None, None
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=g)
    flips = torch.rand(n, generator=g) < 0.5 if flip else None
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=g) if crop_seeds else None
    return order, flips, seeds


class _BatchesBase:
    def __init__(self, num_samples: int, batch_size: int, finisher: Finisher, shuffle: bool, flip: bool):
        self.num_samples = num_samples
        self.batch_size = int(batch_size)
        self.finisher = finisher
        self.shuffle = shuffle
        self.flip = flip

    def __len__(self) -> int:
        # The last partial batch counts: the paper's T = 980 on CIFAR-10 is 10 epochs x ceil(50000/512).
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def epoch(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError


class DeviceBatches(_BatchesBase):
    """Batches gathered from one resident tensor on the training device."""

    pipeline = "device"

    def __init__(self, data: ArraySet, batch_size: int, finisher: Finisher, *,
                 shuffle: bool = False, flip: bool = False) -> None:
        super().__init__(len(data), batch_size, finisher, shuffle, flip)
        self.images = data.images.to(finisher.device)
        self.labels = data.labels.to(finisher.device)

    def epoch(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, flips, _ = epoch_plan(self.num_samples, seed, self.shuffle, self.flip)
        order = order.to(self.finisher.device)
        flips = None if flips is None else flips.to(self.finisher.device)
        bs = self.batch_size
        for start in range(0, self.num_samples, bs):
            if self.shuffle:
                idx = order[start:start + bs]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            else:  # fixed order: a slice is a view, no gather needed
                x, y = self.images[start:start + bs], self.labels[start:start + bs]
            f = None if flips is None else flips[start:start + bs]
            yield self.finisher(x, f), y


class _PlanSampler:
    """A batch sampler whose batches are replaced before each epoch. DataLoader iterates it in
    the main process, so persistent workers see the new plan without being restarted."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderBatches(_BatchesBase):
    """Batches decoded by a DataLoader and finished on the device."""

    pipeline = "workers"

    def __init__(self, data: Dataset, batch_size: int, finisher: Finisher, *, shuffle: bool = False,
                 flip: bool = False, workers: int = 2) -> None:
        super().__init__(len(data), batch_size, finisher, shuffle, flip)
        self.data = data
        self.crop_seeds = bool(getattr(data, "needs_seed", False))
        self._sampler = _PlanSampler()
        self.loader = DataLoader(
            data, batch_sampler=self._sampler, num_workers=workers,
            pin_memory=finisher.device.type == "cuda",
            persistent_workers=workers > 0,  # no process start-up per epoch
        )

    def epoch(self, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, flips, seeds = epoch_plan(self.num_samples, seed, self.shuffle, self.flip, self.crop_seeds)
        keys = list(zip(order.tolist(), seeds.tolist() if seeds is not None else [0] * len(order)))
        bs = self.batch_size
        self._sampler.batches = [keys[s:s + bs] for s in range(0, len(keys), bs)]
        if not self._sampler.batches:
            return
        try:
            for b, (x, y) in enumerate(self.loader):
                f = None if flips is None else flips[b * bs:(b + 1) * bs]
                yield self.finisher(x, f), y.to(self.finisher.device, non_blocking=True)
        except DataError as exc:
            raise clean_worker_error(exc) from None
