"""The ``summary.json`` of a run: accuracy, sparsity over prunable and over all parameters,
nonzero parameters, and dense/sparse forward MACs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config
from ..data.spec import InputSpec
from ..masks import Masks, layer_sparsity, sparsity, weight_of
from ..models import prunable_layers
from ..structured.flops import forward_macs

__all__ = ["build_summary", "efficiency", "environment"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a reader needs to judge whether a result should reproduce bit for bit: CPU results repeat
    on the same machine with the same thread count; another CPU, instruction set or torch may differ
    in the last bits, and training amplifies them."""
    import platform

    dev = torch.device(device)
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(dev),
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}


def efficiency(model: nn.Module, masks: Masks, spec: InputSpec, device: torch.device | str = "cpu") -> dict[str, Any]:
    mods = prunable_layers(model)
    prunable_total = sum(weight_of(m).numel() for m in mods.values())
    prunable_nonzero = sum(int(masks[f"{n}.weight"].sum()) for n in mods)
    # Parameters, counting a pruned layer's weight once (weight_orig; weight_mask is a buffer).
    params_total = sum(p.numel() for p in model.parameters())
    pruned = prunable_total - prunable_nonzero
    dense, sparse = forward_macs(model, spec, masks, device)
    return {
        "params_total": params_total,
        "prunable_total": prunable_total,
        "prunable_nonzero": prunable_nonzero,
        "params_nonzero": params_total - pruned,
        "percent_pruned": sparsity(masks),
        "percent_pruned_of_all_params": 100.0 * pruned / max(params_total, 1),
        "macs_dense": dense,
        "macs_sparse": sparse,
        "per_layer": layer_sparsity(masks),
    }


def build_summary(cfg: Config, model: nn.Module, masks: Masks, spec: InputSpec, test_accuracy: float,
                  best_val_accuracy: float, iterations: list[dict], wall_seconds: float,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    return {
        "method": cfg.method,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "run_name": cfg.run_name(),
        **efficiency(model, masks, spec, device),
        "test_accuracy": test_accuracy,
        "best_val_accuracy": best_val_accuracy,
        "iterations": iterations,
        "wall_seconds": wall_seconds,
        "l1_coeff": cfg.l1_coeff if cfg.method.startswith("causal") else None,
        "prune_fraction": cfg.prune_fraction() if cfg.method in ("magnitude", "random") else None,
        "environment": environment(device),
    }
