"""Inputs shared by every Lasso solver: the SGD schedule, feature blocks, and their checks.

A regression's feature vector for sample ``i`` is the concatenation of the features of
several :class:`FeatureBlock` s. A block is a view on a recorded matrix (one row per optimizer
step) plus a rule that turns rows into features; this lets one regression span several layers
("network scope") or carry the three momentum features of the paper's appendix A
(Δθ_t², Δθ_{t+1}², Δθ_t·Δθ_{t+1}) without materialising them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, DataError

__all__ = [
    "KINDS",
    "LassoSchedule",
    "FeatureBlock",
    "validate_problem",
    "step_schedule",
    "visit_order",
    "block_features",
    "combine_rows",
]

#: Feature rules: x = scale*data[r] ("linear"), scale*data[r]**2 ("square"),
#: scale*data[r]*data[r+1] ("cross"); r = row0 + i for sample i.
KINDS = ("linear", "square", "cross")


@dataclass(frozen=True)
class LassoSchedule:
    """Per-sample SGD schedule of docs/method.md §2: eta_s = lr0 / s**power_t, `epochs` passes,
    element-wise gradient clip to ±grad_clip."""

    lr0: float = 1e-2
    power_t: float = 0.25
    epochs: int = 3
    grad_clip: float = 1e12

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr0) and self.lr0 > 0):
            raise ConfigError(f"LassoSchedule.lr0 must be a positive number, got {self.lr0}")
        if not (math.isfinite(self.power_t) and self.power_t >= 0):
            raise ConfigError(f"LassoSchedule.power_t must be >= 0, got {self.power_t}")
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"LassoSchedule.epochs must be a positive integer, got {self.epochs}")
        if not self.grad_clip > 0:
            raise ConfigError(f"LassoSchedule.grad_clip must be > 0, got {self.grad_clip}")


@dataclass(frozen=True, eq=False)
class FeatureBlock:
    """One block of features; sample ``i`` reads row ``row0 + i`` of ``data`` (see :data:`KINDS`).

    ``data`` is (rows, d), float32 / bfloat16 / float64 (float16 is accepted and widened), on
    any device. ``eq=False``: blocks hold tensors, so they compare (and hash) by identity.
    """

    data: torch.Tensor
    kind: str = "linear"
    row0: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"FeatureBlock.kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.data, torch.Tensor) or self.data.dim() != 2:
            raise DataError("FeatureBlock.data must be a 2-D tensor (rows = samples, columns = weights)")
        if not self.data.is_floating_point():
            raise DataError(f"FeatureBlock.data must be floating point, got {self.data.dtype}")
        if int(self.row0) != self.row0 or self.row0 < 0:
            raise ConfigError(f"FeatureBlock.row0 must be a non-negative integer, got {self.row0}")
        if not math.isfinite(self.scale):
            raise ConfigError(f"FeatureBlock.scale must be finite, got {self.scale}")

    @property
    def dim(self) -> int:
        """Number of features (coordinates of gamma) this block contributes."""
        return int(self.data.shape[1])

    def rows_needed(self, n: int) -> int:
        """Rows ``data`` must have for ``n`` samples."""
        return self.row0 + n + (1 if self.kind == "cross" else 0)


def validate_problem(blocks: list[FeatureBlock], y: torch.Tensor, l1_coeff: float) -> int:
    """Check shapes, devices and the penalty; return the number of samples ``n``."""
    if not blocks:
        raise ConfigError("solve needs at least one FeatureBlock")
    if not all(isinstance(b, FeatureBlock) for b in blocks):
        raise ConfigError("blocks must be a list of FeatureBlock")
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise DataError("y must be a 1-D tensor with one target per sample")
    if not (math.isfinite(l1_coeff) and l1_coeff >= 0):
        raise ConfigError(f"l1_coeff must be a finite number >= 0, got {l1_coeff}")
    n = int(y.shape[0])
    device = blocks[0].data.device
    for k, b in enumerate(blocks):
        if b.data.device != device:
            raise DataError(f"block {k} is on {b.data.device} but block 0 is on {device}; move them together")
        if b.data.shape[0] < b.rows_needed(n):
            raise DataError(
                f"block {k} has {b.data.shape[0]} rows but {n} samples of kind {b.kind!r} from "
                f"row0={b.row0} need {b.rows_needed(n)}; record more steps or shorten y"
            )
    if n and not bool(torch.isfinite(y).all()):
        raise DataError("y contains NaN or inf; the recorded losses diverged, re-record them")
    return n


def step_schedule(n_steps: int, l1_coeff: float, schedule: LassoSchedule) -> tuple[np.ndarray, np.ndarray]:
    """(eta_s, u_s) for s = 1..n_steps in float64 (docs/method.md §2).

    u is accumulated left to right (``np.cumsum`` is sequential), exactly like the update's
    ``u += eta * l1_coeff``; keeping the scalars in float64 costs nothing and keeps u exact
    enough when it is subtracted from float32 q.
    """
    s = np.arange(1, n_steps + 1, dtype=np.float64)
    etas = schedule.lr0 / s**schedule.power_t
    us = np.cumsum(etas * float(l1_coeff))
    return etas, us


def visit_order(n: int, epochs: int, shuffle: bool, generator: torch.Generator | None) -> np.ndarray:
    """Sample indices for all epochs, concatenated (int64): one ``torch.randperm`` per epoch,
    drawn in epoch order from ``generator`` (a fresh ``torch.Generator()`` if None)."""
    if not shuffle:
        return np.tile(np.arange(n, dtype=np.int64), epochs)
    gen = generator if generator is not None else torch.Generator()
    perms = [torch.randperm(n, generator=gen, device=gen.device).cpu() for _ in range(epochs)]
    return torch.cat(perms).numpy().astype(np.int64) if perms else np.zeros(0, np.int64)


def block_features(block: FeatureBlock, rows: torch.Tensor | slice | int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Materialise a block's features for sample rows (counted from row0) in ``dtype``.

    In float32 this is exactly the arithmetic of the SGD solvers (round data to float32,
    multiply the two factors, then by ``scale`` rounded to float32), so every path agrees up
    to the rounding of its dot products.
    """
    if isinstance(rows, int):
        rows = slice(rows, rows + 1)
    if isinstance(rows, slice):
        start, stop = block.row0 + (rows.start or 0), block.row0 + rows.stop
        a = block.data[start:stop]
        b = block.data[start + 1:stop + 1] if block.kind == "cross" else None
    else:
        a = block.data[rows + block.row0]
        b = block.data[rows + block.row0 + 1] if block.kind == "cross" else None
    return combine_rows(block, a, b, dtype)


def combine_rows(block: FeatureBlock, a: torch.Tensor, b: torch.Tensor | None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Features of ``block`` from its stored rows ``a`` (and, for "cross", the next rows ``b``),
    on whatever device the rows are: the arithmetic of :func:`block_features`."""
    a = a.to(dtype)
    if block.kind == "square":
        a = a * a
    elif block.kind == "cross":
        a = a * b.to(dtype)
    # A Python scalar, not a tensor built from it: a CUDA tensor made from a host value is a
    # blocking copy, once per block per sample. The scalar is rounded to ``dtype`` inside the
    # kernel, so this is the same product as with a 0-dim ``dtype`` tensor.
    return a * float(block.scale)
