"""Which tensors an analysis perturbs, and how a model is evaluated at a given point.

The analyses (Hessian spectrum, loss landscape) act on the *prunable weights* only: the weights
of ``nn.Linear`` / ``nn.Conv{1,2,3}d`` layers (docs/method.md §1), optionally their biases.
A model comes in one of two forms and both are handled here:

* a plain model, with a mask set given separately (``{"<fqn>.weight": uint8 tensor}``);
* a model pruned with ``torch.nn.utils.prune``: the trainable tensor is ``weight_orig`` and the
  mask is the ``weight_mask`` buffer (a separately given mask is multiplied into it).

Either way the model is evaluated at the *masked* point ``theta * mask`` (a plain model's pruned
weights need not be zero yet), through ``torch.func.functional_call`` so that the module's own
parameters are never written to.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call

from ..errors import DataError, MaskError

__all__ = [
    "PRUNABLE_LAYERS",
    "Target",
    "analysis_targets",
    "masked_point",
    "eval_mode",
    "reiterable",
    "batch_size",
    "batch_loss",
    "mean_loss",
]

PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Target:
    """One tensor an analysis acts on.

    ``key`` is the mask-set name (``"conv1.weight"``), ``param_name`` the name under which the
    trainable tensor appears in ``model.named_parameters()`` (``"conv1.weight_orig"`` once
    pruned), ``mask`` a 0/1 tensor of the parameter's dtype and device, or None (all kept).
    """

    key: str
    param_name: str
    param: torch.Tensor
    mask: torch.Tensor | None


def _target(module: nn.Module, fqn: str, attr: str, given: torch.Tensor | None) -> Target:
    pruned = hasattr(module, f"{attr}_orig") and f"{attr}_mask" in module._buffers
    param = getattr(module, f"{attr}_orig") if pruned else getattr(module, attr)
    prefix = f"{fqn}." if fqn else ""
    key = f"{prefix}{attr}"
    masks = [module._buffers[f"{attr}_mask"]] if pruned else []
    if given is not None:
        if tuple(given.shape) != tuple(param.shape):
            raise MaskError(f"mask {key} has shape {tuple(given.shape)} but the model's tensor has shape "
                            f"{tuple(param.shape)}; was it saved for another model?")
        masks.append(given)
    mask = None
    for m in masks:
        m = (m != 0).to(device=param.device, dtype=param.dtype)
        mask = m if mask is None else mask * m
    return Target(key, f"{prefix}{attr}_orig" if pruned else key, param, mask)


def analysis_targets(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None,
                     *, include_bias: bool = False) -> list[Target]:
    """The prunable weights of ``model`` (plus Linear/Conv biases if ``include_bias``), with masks.

    BatchNorm and other parameters are never included. Raises MaskError for a mask name that is not
    a prunable tensor of the model, or a shape that differs.
    """
    masks = dict(masks or {})
    targets: list[Target] = []
    for fqn, module in model.named_modules():
        if not isinstance(module, PRUNABLE_LAYERS):
            continue
        attrs = ["weight"] + (["bias"] if include_bias and _has(module, "bias") else [])
        for attr in attrs:
            key = f"{fqn}.{attr}" if fqn else attr
            targets.append(_target(module, fqn, attr, masks.pop(key, None)))
    if masks:
        names = ", ".join(sorted(masks)[:5])
        raise MaskError(f"mask names not among the model's prunable weights: {names}; "
                        f"expected names like {targets[0].key if targets else '<layer>.weight'}")
    if not targets:
        raise MaskError("the model has no Linear or Conv layers to analyse")
    return targets


def _has(module: nn.Module, attr: str) -> bool:
    return getattr(module, f"{attr}_orig", None) is not None or getattr(module, attr, None) is not None


def masked_point(targets: list[Target]) -> list[torch.Tensor]:
    """Detached copies of the targets at the masked point ``theta * mask``."""
    return [t.param.detach() * t.mask if t.mask is not None else t.param.detach().clone() for t in targets]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (BatchNorm uses running stats, dropout is off), then
    restore each submodule's own ``training`` flag, even if they differed."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def reiterable(batches: Batches) -> Batches:
    """Batches that can be iterated more than once: a one-shot iterator is materialised."""
    if iter(batches) is batches:
        batches = list(batches)
    if isinstance(batches, (list, tuple)) and not batches:
        raise DataError("no batches were given; pass a non-empty iterable of (x, y) pairs")
    return batches


def batch_size(y: torch.Tensor) -> int:
    """Number of samples in a batch, read from its targets."""
    return int(y.shape[0]) if y.ndim else 1


def batch_loss(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               names: list[str], values: list[torch.Tensor]) -> torch.Tensor:
    """``loss_fn(model(x), y)`` with the named parameters replaced by ``values``."""
    return loss_fn(functional_call(model, dict(zip(names, values)), (x,)), y)


def mean_loss(model: nn.Module, loss_fn: Callable, batches: Batches,
              names: list[str], values: list[torch.Tensor]) -> torch.Tensor:
    """Sample-weighted mean of the batch losses (the loss over the whole set when ``loss_fn``
    averages), with the named parameters replaced by ``values``."""
    total, count = None, 0
    for x, y in batches:
        n = batch_size(y)
        loss = batch_loss(model, loss_fn, x, y, names, values) * n
        total = loss if total is None else total + loss
        count += n
    if total is None:
        raise DataError("no batches were given; pass a non-empty iterable of (x, y) pairs")
    return total / count
