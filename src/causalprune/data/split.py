"""The validation split: a seeded fraction of the *training* data.

The paper's code selected models on the test set (docs/method.md §7, do not copy). Here model
selection and early stopping use ``val``, carved from the training split by a permutation
seeded with the run seed; the test split is only touched for the final report.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError

__all__ = ["split_indices", "holdout_indices"]


def split_indices(n: int, val_frac: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices) of ``n`` samples; ``round(n * val_frac)`` go to val.

    Both index tensors are sorted, so the stored order of the data is kept inside each part.
    """
    if not 0.0 <= val_frac < 1.0 or math.isnan(val_frac):
        raise ConfigError(f"val_frac must be in [0, 1), got {val_frac}; 0.1 holds out 10% of the training data")
    n_val = int(round(n * val_frac))
    if n - n_val < 1:
        raise ConfigError(f"val_frac={val_frac} leaves no training samples out of {n}; lower --val-frac")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def holdout_indices(n: int, frac: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) indices for a fixed test holdout (e.g. digits' 20% test split)."""
    return split_indices(n, frac, seed)
