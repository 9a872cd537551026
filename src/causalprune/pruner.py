"""``CausalPruner``: causal pruning inside your own training loop.

    pruner = CausalPruner(model, optimizer, l1_coeff=1e-14)
    for x, y in loader:                      # plain SGD (momentum allowed: Appendix A model)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        pruner.step(loss)                    # records dtheta and L of this step
    masks = pruner.compute_masks()           # fits eq. (9); masks only shrink
    pruner.apply(masks)                      # torch.nn.utils.prune weight_orig/weight_mask
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import Config
from .dist import MeanLossOverRanks
from .errors import ConfigError
from .masks import Masks, apply_masks, check_not_empty, combine, current_masks
from .methods.causal import causal_decision
from .record.recorder import Recorder

__all__ = ["CausalPruner"]


class CausalPruner:
    """Records one pruning phase of SGD on ``model`` and turns it into masks.

    ``optimizer`` must be ``torch.optim.SGD`` (the Granger-causal model of eq. 5-7 is derived for
    SGD; with momentum the three-feature model of Appendix A is used). Keyword arguments are
    :class:`~causalprune.config.Config` fields: ``l1_coeff``, ``granularity``, ``scope``, ``solver``,
    ``record_dtype``, ``lasso_epochs``, ``allow_empty_layers``, ...
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, seed: int = 0,
                 expected_steps: int = 256, **settings):
        if not isinstance(optimizer, torch.optim.SGD):
            raise TypeError("CausalPruner needs torch.optim.SGD: the causal model (paper eq. 5-7) is derived "
                            "for SGD; use SGD for the pruning phase")
        group = optimizer.param_groups[0]
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(Config)})
        if unknown:
            raise ConfigError(f"unknown CausalPruner setting(s) {', '.join(unknown)}; use Config field names "
                              "such as l1_coeff, granularity, scope, solver, record_dtype")
        self.cfg = Config(lr_prune=float(group["lr"]), momentum=float(group.get("momentum", 0.0)),
                          seed=seed, method="causal").replace(**settings).validate()
        self.model = model
        self.masks = current_masks(model)
        self._record(expected_steps)
        # theta_t is taken right before every optimizer step, so a rewind (Algorithm 1 line 7) or any
        # other change of the weights between steps never enters a recorded dtheta.
        self._hook = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.recorder.before_step())

    def remove(self) -> None:
        """Detach from the optimizer (the step pre-hook); the pruner records nothing after this."""
        self._hook.remove()

    def _record(self, steps: int) -> None:
        self.recorder = Recorder(self.model, self.masks, lr=self.cfg.lr_prune, max_steps=steps,
                                 dtype=self.cfg.record_dtype)
        # Under DDP (e.g. Lightning's strategy) eq. (8) pairs dtheta with the global batch's loss.
        self._step = MeanLossOverRanks(self.recorder)

    def step(self, loss: torch.Tensor) -> None:
        """Call after ``optimizer.step()`` with the loss of that step's forward pass."""
        self._step.after_step(loss)

    @property
    def steps(self) -> int:
        return self.recorder.steps

    def compute_masks(self) -> Masks:
        """Fit the Lasso on everything recorded so far; return the new (shrunk) masks."""
        if self.recorder.steps < 3:
            raise ValueError("record at least 3 steps before computing masks")
        gen = torch.Generator().manual_seed(self.cfg.seed)
        keep, self.gammas = causal_decision(self.recorder, self.cfg, gen)
        new = combine(self.masks, keep)
        check_not_empty(new, self.cfg.allow_empty_layers, "use a smaller l1_coeff")
        return new

    def apply(self, masks: Masks) -> None:
        """Apply masks with torch.nn.utils.prune and restart recording for the next phase."""
        apply_masks(self.model, masks)
        self.masks = current_masks(self.model)
        self._record(max(self.recorder.steps, 16))
