"""Lasso solvers for eq. (9): pure numerical cores, tensors in and tensors out.

* :func:`solve_reference` / :func:`lasso_sgd`: the per-sample cumulative-penalty SGD that
  produced the paper's masks (docs/method.md §2); fused numba kernel on CPU, torch elsewhere.
* :class:`OnlineLasso`: the same update, streamed one sample at a time in O(d) memory.
* :func:`solve_exact`: scikit-learn's Lasso objective solved to a duality gap (working-set coordinate descent).

``SOLVERS`` maps a solver name to a callable with one shared signature,
``fn(blocks, y, l1_coeff, *, schedule, generator, **options) -> list[Tensor]`` (one float32 γ per
block); a solver that has no use for the schedule or the generator ignores it:

* ``"reference"``: :func:`solve_reference` (options: schedule, shuffle, generator, progress, backend).
* ``"exact"``: :func:`solve_exact_blocks`, the exact minimiser with ``alpha = l1_coeff``
  (sklearn's scale: the loss is divided by n, so useful values differ from the SGD solver's);
  materialises the T×d features. Options: tol, max_iter.
* ``"online"``: :func:`solve_online`, one in-order pass of :class:`OnlineLasso` (options:
  schedule, progress).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError, RecordMemoryError
from ..units import format_bytes, free_memory_bytes
from .blocks import KINDS, FeatureBlock, LassoSchedule, block_features, validate_problem
from .exact import solve_exact
from .online import OnlineLasso, solve_online
from .reference import BACKENDS, lasso_sgd, solve_reference

__all__ = [
    "KINDS",
    "BACKENDS",
    "LassoSchedule",
    "FeatureBlock",
    "solve_reference",
    "lasso_sgd",
    "OnlineLasso",
    "solve_online",
    "solve_exact",
    "solve_exact_blocks",
    "SOLVERS",
    "get_solver",
]


def solve_exact_blocks(blocks: list[FeatureBlock], y: torch.Tensor, l1_coeff: float, *,
                       tol: float = 1e-6, max_iter: int = 10000, schedule: LassoSchedule | None = None,
                       generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """:func:`solve_exact` on the concatenated features of ``blocks`` (alpha = l1_coeff), split per block.

    The exact minimiser has no step schedule and no visiting order: ``schedule`` and ``generator``
    are accepted (the shared signature of ``SOLVERS``) and not used. The T x d fp32 matrix and its
    rescaled copy must fit in memory: refuse with a RecordMemoryError before allocating.
    """
    n = validate_problem(blocks, y, l1_coeff)
    d = sum(b.dim for b in blocks)
    need, avail = 2 * 4 * n * d, free_memory_bytes(blocks[0].data.device)
    if need > 0.9 * avail:
        raise RecordMemoryError(
            f"--solver exact needs {format_bytes(need)} for {n} x {d:,} fp32 features (and a rescaled copy) "
            f"but {format_bytes(avail)} is free on {blocks[0].data.device}; use --scope layer, "
            "--solver reference or online, or fewer steps (--max-steps-per-epoch, --n-prune)")
    dtype = torch.float64 if all(b.data.dtype == torch.float64 for b in blocks) else torch.float32
    X = torch.cat([block_features(b, slice(0, n), dtype) for b in blocks], dim=1)
    gamma = solve_exact(X, y, l1_coeff, tol=tol, max_iter=max_iter).float()
    return list(torch.split(gamma, [b.dim for b in blocks]))


SOLVERS: dict[str, Callable[..., list[torch.Tensor]]] = {
    "reference": solve_reference,  # the paper's solver (cumulative-penalty SGD, shuffled, 3 epochs)
    "exact": solve_exact_blocks,  # the true Lasso minimiser (to a duality gap)
    "online": solve_online,  # streaming: one in-order pass, O(d) memory
}


def get_solver(name: str) -> Callable[..., list[torch.Tensor]]:
    """Look up ``SOLVERS[name]``; an unknown name raises a ConfigError listing the valid ones."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}") from None
