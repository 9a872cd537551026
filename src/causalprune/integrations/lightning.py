"""``CausalPruning``: Granger-causal pruning inside Lightning's ``Trainer.fit``.

    trainer = L.Trainer(max_epochs=12, callbacks=[CausalPruning(prune_at=[3, 7], record_epochs=2,
                                                                l1_coeff=1e-14, rewind=True)])
    trainer.fit(module)         # configure_optimizers must return torch.optim.SGD

During the ``record_epochs`` epochs that end at each epoch of ``prune_at`` (0-based, like
``trainer.current_epoch``) every optimizer step's loss and dtheta are recorded by a
:class:`~causalprune.pruner.CausalPruner` (docs/method.md §1). At the end of that epoch the Lasso of
eq. (9) is fitted per layer, and the weights with gamma = 0 are pruned: the masks are
``torch.nn.utils.prune`` ``weight_orig``/``weight_mask`` pairs, multiplied into the previous ones.
With ``rewind=True`` the surviving weights and all biases then go back to their values at the start
of the first recorded epoch (Algorithm 1, line 7), and SGD's momentum buffers are cleared.

Every Linear/Conv layer of the LightningModule is a candidate. The masks are put in place (all
ones) in ``setup``, before Lightning wraps the module in DDP, and under DDP the per-layer fits are
spread over the ranks and the masks checked on every rank (``causalprune.distributed``).
Gradient accumulation is supported: a recorded step's loss is the mean over its micro-batches.
Needs Lightning: ``pip install 'causalprune[lightning]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable

import torch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise ImportError("causalprune.integrations.lightning needs Lightning: "
                          "pip install 'causalprune[lightning]'") from None

from ..config import Config
from ..dist.agree import agree_on_masks
from ..errors import ConfigError
from ..masks import apply_masks, ones_masks, sparsity
from ..models import prunable_layers
from ..pruner import CausalPruner

__all__ = ["CausalPruning"]


class CausalPruning(Callback):
    """Lightning callback running causal pruning at the end of the epochs ``prune_at``.

    ``settings`` are :class:`~causalprune.config.Config` fields (``l1_coeff``, ``granularity``,
    ``scope``, ``solver``, ``record_dtype``, ``allow_empty_layers``, ...). ``history`` lists one dict
    per pruning (epoch, recorded steps, percent pruned, per-layer masks).
    """

    def __init__(self, prune_at: int | Iterable[int] = (0,), *, record_epochs: int = 1, rewind: bool = False,
                 seed: int = 0, **settings: Any):
        self.prune_at = sorted({int(prune_at)} if isinstance(prune_at, int) else {int(e) for e in prune_at})
        self.record_epochs = int(record_epochs)
        if self.record_epochs < 1 or not self.prune_at or self.prune_at[0] < self.record_epochs - 1:
            raise ConfigError("CausalPruning needs record_epochs >= 1 and prune_at epochs >= record_epochs - 1")
        if any(b - a < self.record_epochs for a, b in zip(self.prune_at, self.prune_at[1:])):
            raise ConfigError(f"prune_at epochs must be at least record_epochs={self.record_epochs} apart "
                              "(each pruning records its own epochs)")
        try:
            Config(method="causal").replace(**settings).validate()
        except TypeError as exc:
            raise ConfigError(f"CausalPruning: unknown setting ({exc}); use Config field names such as "
                              "l1_coeff, granularity, record_dtype") from None
        self.rewind, self.seed, self.settings = bool(rewind), int(seed), settings
        self.history: list[dict[str, Any]] = []
        self.last_gammas: dict[str, torch.Tensor] = {}
        self._pruner: CausalPruner | None = None
        self._pending: torch.Tensor | None = None
        self._last_step = -1
        self._snapshot: dict[str, torch.Tensor] | None = None

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # masks (all ones) before DDP wrapping and before the optimizer exists
            todo = {k: m for k, m in ones_masks(pl_module).items()
                    if not hasattr(prunable_layers(pl_module)[k[: -len(".weight")]], "weight_mask")}
            apply_masks(pl_module, todo)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if not any(e - self.record_epochs + 1 == epoch for e in self.prune_at):
            return
        if len(trainer.optimizers) != 1 or not isinstance(trainer.optimizers[0], torch.optim.SGD):
            raise ConfigError("CausalPruning records SGD steps (paper eq. 5-7): configure_optimizers must return "
                              "a single torch.optim.SGD during the recorded epochs")
        if self.rewind and self._snapshot is None:
            self._snapshot = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        batches = trainer.num_training_batches
        steps = int(batches) * self.record_epochs if batches != float("inf") else 256
        self._pruner = CausalPruner(pl_module, trainer.optimizers[0], seed=self.seed, expected_steps=max(steps, 16),
                                    **self.settings)
        self._pending, self._last_step = None, trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pruner is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:  # training_step skipped this batch
            return
        # Lightning divides each micro-batch loss by accumulate_grad_batches: their sum is the
        # mean loss of the optimizer step, at the parameters before it (docs/method.md §1).
        loss = loss.detach().float()
        self._pending = loss if self._pending is None else self._pending + loss
        if trainer.global_step != self._last_step:
            self._pruner.step(self._pending)
            self._pending, self._last_step = None, trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if epoch not in self.prune_at or self._pruner is None:
            return
        pruner, self._pruner = self._pruner, None
        if pruner.steps < 3:
            raise ConfigError(f"CausalPruning recorded only {pruner.steps} optimizer steps before epoch {epoch} "
                              "ended; record more epochs (record_epochs) or use smaller batches")
        new = pruner.compute_masks()  # the one causal decision; under DDP each layer is fitted by one rank
        self.last_gammas = pruner.gammas
        new = agree_on_masks(new)
        pruner.recorder.free()
        apply_masks(pl_module, new)
        if self.rewind:
            self._rewind(trainer, pl_module)
        pct = sparsity(new)
        self.history.append({"epoch": epoch, "steps": pruner.steps, "percent_pruned": pct,
                             "masks": {k: v.cpu() for k, v in new.items()}})
        pl_module.log("causal_pruning/percent_pruned", pct)

    @torch.no_grad()
    def _rewind(self, trainer, pl_module) -> None:
        params = dict(pl_module.named_parameters())
        for name, value in (self._snapshot or {}).items():
            params[name].copy_(value)
        for opt in trainer.optimizers:
            opt.state.clear()  # momentum buffers belong to the weights before the rewind

    # -- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": [{k: v for k, v in h.items() if k != "masks"} for h in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
