"""How sharp is the accuracy drop as more weights are pruned (paper §1, Test 1, Fig. 1a)?

The paper argues that an optimal pruning method keeps its accuracy until the "unimportant"
weights are used up and then drops abruptly (a phase shift), while a sub-optimal one degrades
smoothly. It shows this by eye; :func:`transition_width` turns it into a number:

* collapse repeated x values to their median accuracy, sort by percent pruned, and join the points
  piecewise-linearly;
* ``A0`` = the highest accuracy (mild pruning can raise accuracy, so the least-pruned point is not
  always the top), ``A1`` = the accuracy at the most-pruned point, ``D = A0 - A1``;
* searching to the right of the maximum, find where the curve first falls below ``A0 - lo*D``
  and where it first falls below ``A0 - hi*D``; the width is the distance between the two, in
  percentage points of pruning. Smaller is sharper: a step gives at most one grid spacing
  (``(hi - lo)`` times it), a straight ramp gives ``(hi - lo)`` times its extent.

The figure itself is :func:`causalprune.analysis.plots.plot_phase`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["transition_width", "median_by_x", "median_curve"]


def median_by_x(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct finite x values and the median of y at each (NaN pairs dropped)."""
    if len(x) != len(y):
        raise ConfigError(f"percent_pruned has {len(x)} values but accuracy has {len(y)}; pass one per run")
    groups: dict[float, list[float]] = defaultdict(list)
    for xi, yi in zip(x, y):
        xi, yi = float(xi), float(yi)
        if math.isfinite(xi) and math.isfinite(yi):
            groups[xi].append(yi)
    xs = np.array(sorted(groups), dtype=float)
    return xs, np.array([float(np.median(groups[v])) for v in xs], dtype=float)


def _first_below(x: np.ndarray, y: np.ndarray, level: float, start: int) -> float:
    """x where the piecewise-linear curve first drops below ``level`` after index ``start``."""
    for i in range(start + 1, len(x)):
        if y[i] < level:
            # y[i-1] >= level > y[i]: interpolate linearly inside this segment.
            frac = (y[i - 1] - level) / (y[i - 1] - y[i])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return math.nan


def transition_width(percent_pruned: Sequence[float], accuracy: Sequence[float],
                     hi: float = 0.9, lo: float = 0.1) -> float:
    """Width (in points of percent pruned) of the accuracy drop between ``lo`` and ``hi`` of the
    total drop; see the module docstring. Returns NaN when there is no drop (``D <= 0``: the
    most-pruned point is the most accurate) or fewer than two distinct percent-pruned values."""
    if not 0.0 <= lo < hi < 1.0:
        raise ConfigError(f"need 0 <= lo < hi < 1 (got lo={lo}, hi={hi})")
    x, y = median_by_x(percent_pruned, accuracy)
    if len(x) < 2:
        return math.nan
    top = int(np.argmax(y))
    a0, a1 = float(y[top]), float(y[-1])
    drop = a0 - a1
    if not drop > 0:
        return math.nan
    x_lo = _first_below(x, y, a0 - lo * drop, top)
    x_hi = _first_below(x, y, a0 - hi * drop, top)
    # Both exist: the last point sits at A0 - D, strictly below either level since hi < 1.
    return x_hi - x_lo


def median_curve(points: Iterable[tuple[float, float, int]]) -> dict[str, np.ndarray]:
    """Median and min-max band across seeds of accuracy vs percent pruned.

    ``points`` are ``(percent_pruned, accuracy, seed)``. Percent pruned is an outcome and differs
    between seeds, so each seed's curve is interpolated linearly onto the union of all x values
    (only inside that seed's own range, never extrapolated). Returns ``{"x", "median", "min",
    "max", "n"}`` where ``n`` counts the seeds that cover each x.
    """
    by_seed: dict[int, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for pp, acc, seed in points:
        by_seed[seed][0].append(pp)
        by_seed[seed][1].append(acc)
    curves = [median_by_x(xs, ys) for xs, ys in by_seed.values()]
    curves = [c for c in curves if len(c[0])]
    grid = np.unique(np.concatenate([c[0] for c in curves])) if curves else np.empty(0)
    stack = np.full((len(curves), len(grid)), np.nan)
    for row, (xs, ys) in zip(stack, curves):
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        row[inside] = np.interp(grid[inside], xs, ys)
    n = np.sum(np.isfinite(stack), axis=0)
    if not len(grid):
        return {"x": grid, "median": grid.copy(), "min": grid.copy(), "max": grid.copy(), "n": n}
    return {"x": grid, "median": np.nanmedian(stack, axis=0), "min": np.nanmin(stack, axis=0),
            "max": np.nanmax(stack, axis=0), "n": n}
