"""``--solver online``: fit the Lasso of eq. (9) *while* the pruning epochs train, storing nothing per step.

The reference path records a (T, D) matrix of dtheta/lr and fits it afterwards. This callback
keeps only a rolling window of the last ``lag + 1`` steps (lag 1 for eq. 7, lag 2 for the momentum
model of Appendix A, eq. 16) and feeds each sample to :class:`~causalprune.solvers.OnlineLasso` as
soon as its target is known:

* first order, after step t: sample s = t-1 with x = dtheta_{t-1}^2 and y = L_t - L_{t-1};
* momentum, after step t: sample s = t-2 with (dtheta_{t-1}^2, dtheta_{t-2}^2,
  dtheta_{t-2} * dtheta_{t-1}) and y = L_t - L_{t-1}.

Memory is O(d): the window (lag + 1 rows), one fp32 copy of the live weights, and gamma and q
per feature. The samples arrive in training order and are seen once, so the result equals
``solve_reference(..., shuffle=False, epochs=1)`` on the recording of the same run (the window
is a :class:`~causalprune.record.Recorder` and the features come from
:func:`~causalprune.features.layer_features`, so the arithmetic is the same).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..errors import TrainingError
from ..masks import Masks
from ..solvers import LassoSchedule, OnlineLasso
from ..solvers.blocks import block_features
from .features import LayerFeatures, layer_features
from .recorder import Recorder

__all__ = ["OnlineCausal"]


class OnlineCausal:
    """Step callback (``after_step(loss)``, like :class:`Recorder`) that streams eq. (9) into
    one :class:`OnlineLasso` per layer (``--scope layer``) or one for the network.

    ``gammas()`` then gives gamma per layer; the causal method turns them into masks exactly as it
    does for a recording (methods/causal.py).
    """

    def __init__(self, model: nn.Module, masks: Masks, cfg: Config, *, device: torch.device | None = None):
        self.cfg = cfg
        self.lag = 2 if cfg.momentum > 0 else 1
        # The window is a tiny Recorder: same live-weight gather, same dtype rounding and the
        # same loss (global under DDP: the caller reduces it) as the recorded path, so the samples are bit-identical.
        self.window = Recorder(model, masks, lr=cfg.lr_prune, max_steps=self.lag + 1, dtype=cfg.record_dtype,
                               device=device, budget_bytes=1 << 62)
        self.window.buffer.zero_()
        self.slots = self.window.slots
        self.width = self.window.width
        self.device = self.window.device
        self.samples = 0
        sched = LassoSchedule(lr0=cfg.lasso_lr0, power_t=cfg.lasso_power_t, epochs=1)
        # Block sizes come from the features of an all-zero window (only their shapes matter).
        self._layers = self._features()
        dims = [[b.dim for b in lf.blocks] for lf in self._layers]
        if cfg.scope == "network":
            dims = [[d for ds in dims for d in ds]]
        self.solvers = [OnlineLasso(ds, cfg.l1_coeff, schedule=sched, device=self.device) for ds in dims]

    @property
    def steps(self) -> int:
        """Optimizer steps seen so far (samples fed = steps - lag)."""
        return self.samples + self.window.steps

    def _features(self) -> list[LayerFeatures]:
        """Features of the window's first sample (rows 0..lag-1), per layer."""
        return layer_features(self.window.buffer[: self.lag], self.window.slots, self.window.lr,
                              momentum=self.lag == 2, granularity=self.cfg.granularity)

    @torch.no_grad()
    def after_step(self, loss: torch.Tensor) -> None:
        """Call right after ``optimizer.step()`` with the loss of that step's forward pass."""
        w = self.window
        w.after_step(loss)
        if w.steps < self.lag + 1:
            return
        y = w.targets(lag=self.lag)[0]  # stays on the device: no host sync per step
        self._layers = self._features()
        xs = [[block_features(b, 0)[0] for b in lf.blocks] for lf in self._layers]
        if len(self.solvers) == 1 and len(xs) > 1:
            xs = [[x for xl in xs for x in xl]]
        for solver, x in zip(self.solvers, xs):
            solver.update(x, y)
        self.samples += 1
        # Slide the window by one step: the oldest row and loss are no longer needed.
        w.buffer[:-1] = w.buffer[1:].clone()
        w.losses[:-1] = w.losses[1:].clone()
        w.steps -= 1

    @property
    def layers(self) -> list[LayerFeatures]:
        """The features' layout per layer (which columns, groups), for turning gammas into masks."""
        return self._layers

    def gammas(self) -> list[list[torch.Tensor]]:
        """gamma per layer, one tensor per feature block (1, or 3 with momentum)."""
        if self.samples == 0:
            raise TrainingError(f"the online Lasso saw no sample ({self.steps} steps); it needs at least "
                                f"{self.lag + 1} optimizer steps per pruning iteration")
        flat = [g for s in self.solvers for g in s.gammas()]
        out, i = [], 0
        for lf in self._layers:
            out.append(flat[i:i + len(lf.blocks)])
            i += len(lf.blocks)
        return out

    def held_bytes(self) -> int:
        """Memory held: the window, the previous weights, and gamma and q of every feature."""
        solver = sum(2 * 4 * d for s in self.solvers for d in s.dims)
        return self.window.held_bytes() + self.width * 4 + solver

    def free(self) -> None:
        self.window.free()
