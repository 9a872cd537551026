"""Model registry (docs/method.md §5).

``MODELS`` is a plain dict from name to a builder ``f(InputSpec) -> nn.Module``. Prunable
weights are the ``.weight`` of every ``nn.Linear`` / ``nn.Conv1d/2d/3d``; biases and
BatchNorm parameters are trained but never pruned (docs/method.md §1).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..data.spec import InputSpec
from ..errors import ConfigError
from .alexnet import build_alexnet, build_alexnet32
from .lenet import build_lenet
from .mlp import build_mlp
from .resnet import build_resnet18, build_resnet18_nobn, build_resnet50

__all__ = [
    "MODELS",
    "PRUNABLE_TYPES",
    "build_model",
    "count_parameters",
    "prunable_layers",
]

MODELS: dict[str, Callable[[InputSpec], nn.Module]] = {
    "mlp": build_mlp,
    "lenet": build_lenet,
    "alexnet": build_alexnet,
    "alexnet32": build_alexnet32,
    "resnet18": build_resnet18,
    "resnet18-nobn": build_resnet18_nobn,
    "resnet50": build_resnet50,
}

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def build_model(name: str, spec: InputSpec) -> nn.Module:
    """Build model ``name`` for inputs of shape ``spec`` (random init from the global torch RNG).

    Seed torch *before* calling this: the paper's code seeded after building, which left the
    initialisation unseeded (docs/method.md §7).
    """
    _check_name(name)
    return MODELS[name](spec)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{fully-qualified module name: module}`` of every Linear/Conv layer, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, prunable weights). Works before and after ``torch.nn.utils.prune``
    (there ``weight_orig`` is the parameter and ``weight`` an attribute of the same size)."""
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(m.weight.numel() for m in prunable_layers(model).values())
    return total, prunable
