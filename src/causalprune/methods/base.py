"""The shape every pruning method has: a context in, callbacks, then a Decision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

import torch
from torch import nn

from ..config import Config
from ..masks import Masks

__all__ = ["Decision", "PruneContext", "Method"]


class Decision(NamedTuple):
    """One iteration's decision: a uint8 keep mask per weight tensor (1 = keep), and for the
    causal method the |gamma| it was read from (empty for the others)."""

    keep: Masks
    gammas: dict[str, torch.Tensor] = {}


@dataclass
class PruneContext:
    """What a method may know about one pruning iteration."""

    cfg: Config
    iteration: int
    model: nn.Module             # the model being trained (not its DDP wrapper)
    masks: Masks                 # the masks before this iteration
    device: torch.device
    lasso_seed: int = 0          # seed of the Lasso's visiting order in this iteration
    decision_seed: int = 0       # seed of any other random draw of the decision (random pruning)
    steps_per_epoch: int = 0     # optimizer steps in one of the N_prune epochs (sizes the recording)
    spill_path: Path | None = None  # where a recording over the memory budget may go
    log: Callable[[str], None] = print
    # The recording of the SGD epochs (a Recorder, or the online solver): made by a recording
    # method's ``begin``, or handed in by the experiment when iteration 1's epochs are shared
    # (shared.py). The experiment frees it after the decision.
    recording: object | None = None


class Method(Protocol):
    trains: bool    # whether the N_prune SGD epochs run at all
    records: bool   # whether the decision is fitted on those epochs (timed as record + Lasso)
    record_bytes: int  # memory the last recording held (0 when nothing is recorded)

    def preflight(self, cfg: Config, model: nn.Module) -> None: ...

    def begin(self, ctx: PruneContext) -> list: ...

    def decide(self, ctx: PruneContext) -> Decision: ...
