"""Masks: which weights are kept, applied the way ``torch.nn.utils.prune`` keeps them.

A mask set is a ``dict`` from the weight's fully-qualified name (``"conv1.weight"``) to a uint8
tensor shaped like the weight, 1 = kept. On a module the mask lives as ``weight_mask`` next to
``weight_orig``, so ``prune.is_pruned`` and ``prune.remove`` work on our models as on any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from .errors import EmptyLayerError, MaskError
from .models import prunable_layers
from .storage import load_tensors, save_tensors

__all__ = [
    "Masks",
    "weight_of",
    "ones_masks",
    "current_masks",
    "apply_masks",
    "check_fit",
    "make_permanent",
    "combine",
    "check_shrinks",
    "check_not_empty",
    "sparsity",
    "layer_sparsity",
    "save_masks",
    "read_masks",
    "load_masks",
]

Masks = dict[str, torch.Tensor]


def weight_of(module: nn.Module) -> nn.Parameter:
    """The trainable weight tensor: ``weight_orig`` once pruned, ``weight`` before."""
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


def ones_masks(model: nn.Module) -> Masks:
    return {f"{n}.weight": torch.ones_like(weight_of(m), dtype=torch.uint8)
            for n, m in prunable_layers(model).items()}


def current_masks(model: nn.Module) -> Masks:
    """The masks a model carries now (all ones for layers not pruned yet)."""
    out = {}
    for n, m in prunable_layers(model).items():
        mask = getattr(m, "weight_mask", None)
        out[f"{n}.weight"] = (mask != 0).to(torch.uint8) if mask is not None else \
            torch.ones_like(m.weight, dtype=torch.uint8)
    return out


def _check_fit(model: nn.Module, masks: Masks) -> dict[str, nn.Module]:
    mods = prunable_layers(model)
    expected = {f"{n}.weight": m for n, m in mods.items()}
    unknown = sorted(set(masks) - set(expected))
    if unknown:
        raise MaskError(f"mask names not in the model: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''}; the model's prunable weights are "
                        f"{', '.join(sorted(expected)[:8])}{' ...' if len(expected) > 8 else ''}")
    for key, mask in masks.items():
        shape = tuple(weight_of(expected[key]).shape)
        if tuple(mask.shape) != shape:
            raise MaskError(f"mask {key} has shape {tuple(mask.shape)} but the model's weight has shape {shape}; "
                            "was it saved for another model or data set?")
    return expected


def check_fit(model: nn.Module, masks: Masks, *, complete: bool = False) -> Masks:
    """Return ``masks`` if every name is a prunable weight of ``model`` with the same shape
    (and, with ``complete``, every prunable weight has a mask); else raise MaskError."""
    expected = _check_fit(model, masks)
    missing = sorted(set(expected) - set(masks))
    if complete and missing:
        raise MaskError(f"no mask for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                        "the masks were saved for another model")
    return masks


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Set the masks of ``model`` (as ``weight_orig``/``weight_mask``). Layers absent from
    ``masks`` are left as they are. Replaces (does not multiply) an existing mask."""
    expected = _check_fit(model, masks)
    for key, mask in masks.items():
        module = expected[key]
        m = mask.to(device=weight_of(module).device, dtype=weight_of(module).dtype)
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            module.weight_mask.copy_(m)
            # The forward pre-hook recomputes weight on the next forward; do it now so that
            # code reading module.weight before any forward sees the masked value.
            module.weight = module.weight_orig * module.weight_mask
        else:
            prune.custom_from_mask(module, "weight", m)


def make_permanent(model: nn.Module) -> None:
    """``prune.remove`` on every pruned layer: weight becomes a plain parameter with zeros."""
    for m in prunable_layers(model).values():
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            prune.remove(m, "weight")


def combine(old: Masks, keep: Masks) -> Masks:
    """New mask = old * keep: masks only ever shrink (docs/method.md §1)."""
    return {k: (old[k].bool() & keep[k].to(old[k].device).bool()).to(torch.uint8) for k in old}


def check_shrinks(old: Masks, new: Masks) -> None:
    for k in old:
        if bool((new[k].bool() & ~old[k].bool()).any()):
            raise AssertionError(f"mask of {k} grew: a pruned weight came back")


def check_not_empty(masks: Masks, allowed: bool, hint: str) -> None:
    """Refuse a decision that removes every weight of a layer, naming the layer."""
    if allowed:
        return
    empty = [k for k, m in masks.items() if m.numel() > 0 and not bool(m.any())]
    if empty:
        raise EmptyLayerError(f"pruning would remove every weight of {', '.join(empty)}; {hint}, "
                              "or pass --allow-empty-layers")


def sparsity(masks: Masks) -> float:
    """Percent of the weights in ``masks`` that are pruned (0-100)."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 100.0 * (total - kept) / max(total, 1)


def layer_sparsity(masks: Masks) -> dict[str, float]:
    return {k: 100.0 * (1 - float(m.float().mean())) for k, m in masks.items()}


def save_masks(path: str | Path, masks: Masks) -> None:
    save_tensors(path, {k: v.to(torch.uint8) for k, v in masks.items()})


def read_masks(path: str | Path) -> Masks:
    masks = load_tensors(path)
    bad = [k for k, v in masks.items() if v.dtype not in (torch.uint8, torch.bool) or bool((v > 1).any())]
    if bad:
        raise MaskError(f"{path}: {bad[0]} is not a 0/1 mask (dtype {masks[bad[0]].dtype}); "
                        "masks are uint8 tensors with 1 = kept")
    return {k: v.to(torch.uint8) for k, v in masks.items()}


def load_masks(model: nn.Module, path: str | Path) -> Masks:
    """Apply masks saved by ``causal-prune`` (safetensors or .pt) to a fresh model."""
    masks = read_masks(path)
    apply_masks(model, masks)
    return masks


def kept_count(masks: Iterable[torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks)
