"""Honest efficiency figures: multiply-accumulates of one forward pass, dense and with masks.

Unstructured masks save nothing on ordinary dense kernels: the "sparse" figure is what a kernel
that skips zero weights could save, not what PyTorch does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.spec import InputSpec
from ..masks import Masks
from ..models import PRUNABLE_TYPES

__all__ = ["layer_macs", "forward_macs"]


@torch.no_grad()
def layer_macs(model: nn.Module, spec: InputSpec, device: torch.device | str = "cpu") -> dict[str, int]:
    """MACs per prunable layer for one input of shape ``spec`` (weights only, bias adds excluded)."""
    counts: dict[str, int] = {}
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            per_out = module.weight.numel() // module.weight.shape[0]  # in/groups * kernel size
            positions = output.numel() // output.shape[0] // module.weight.shape[0]
            counts[name] = counts.get(name, 0) + int(per_out * positions * module.weight.shape[0])
        return fn

    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, spec.channels, spec.size, spec.size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return counts


def forward_macs(model: nn.Module, spec: InputSpec, masks: Masks, device: torch.device | str = "cpu"
                 ) -> tuple[int, int]:
    """(dense MACs, MACs on unpruned weights) of one forward pass of one input."""
    per_layer = layer_macs(model, spec, device)
    dense = sum(per_layer.values())
    sparse = 0.0
    for name, macs in per_layer.items():
        m = masks.get(f"{name}.weight")
        sparse += macs * (float(m.float().mean()) if m is not None else 1.0)
    return dense, int(round(sparse))
