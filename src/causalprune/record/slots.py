"""Where one layer's live weights sit in a recording."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerSlot"]


@dataclass
class LayerSlot:
    key: str                      # "<module fqn>.weight"
    param: nn.Parameter           # weight_orig (or weight)
    idx: torch.Tensor | None      # flat indices of live weights; None = all live
    start: int                    # first column in the buffer
    stop: int
