"""causalprune: Granger-causal pruning (Shah et al., "A Granger-Causal Perspective on Gradient
Descent with Application to Pruning").

Gradient descent implicitly assumes dL = -(1/eta) sum_k (dtheta_k)^2 (eq. 5). Fitting
dL = sum_k gamma_k (dtheta_k)^2 (eq. 7) with a Lasso (eq. 9) on the data of every SGD step shows
which weights cause loss reduction; the others (gamma_k = 0) are pruned.

The public names are imported lazily, so ``import causalprune`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Config",
    "CausalPruneError",
    "CausalPruner",
    "lasso_sgd",
    "load_masks",
    "save_masks",
    "apply_masks",
    "current_masks",
    "__version__",
]

__version__ = "0.1.0"

_WHERE = {
    "Config": "config",
    "CausalPruneError": "errors",
    "CausalPruner": "pruner",
    "lasso_sgd": "solvers",
    "load_masks": "masks",
    "save_masks": "masks",
    "apply_masks": "masks",
    "current_masks": "masks",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'causalprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
