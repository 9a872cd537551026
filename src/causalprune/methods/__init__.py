"""Pruning methods: what happens in the N_prune SGD epochs of one iteration, and the decision.

A method is a small object with two steps (Algorithm 1, lines 4-6):

* ``begin(ctx)`` returns the step callbacks the SGD epochs need (the causal method's recorder);
* ``decide(ctx)`` turns what they saw, or the weights after them, into keep-decisions.

The experiment multiplies the decision into the running mask (masks only shrink) and rewinds.
``METHODS`` is the one dispatch from ``--method`` to a method.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .base import Decision, Method, PruneContext
from .baselines import (
    Magnitude,
    NoPruning,
    RandomPruning,
    layer_target_counts,
    magnitude_decision,
    random_decision,
    schedule_counts,
)
from .budget import CausalBudget
from .causal import Causal, causal_decision

__all__ = ["Decision", "PruneContext", "Method", "METHODS", "get_method", "causal_decision", "magnitude_decision",
           "random_decision", "schedule_counts", "layer_target_counts"]

METHODS: dict[str, Callable[[], Method]] = {
    "causal": Causal,
    "causal-budget": CausalBudget,
    "magnitude": Magnitude,
    "random": RandomPruning,
    "none": NoPruning,
}


def get_method(name: str) -> Method:
    """A fresh method object for ``--method name``; an unknown name lists the valid ones."""
    try:
        return METHODS[name]()
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
