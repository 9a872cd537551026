"""Strip plots of a hyperparameter sweep (paper §4.1, Fig. 2).

One column per hyperparameter (N_iter, N_prune, L1_coeff), two rows (test accuracy, percent
pruned). Each run is a jittered dot above its setting; a dashed line marks the median per setting,
as the paper's dotted lines do. Settings are shown as categories in increasing order, so
L1_coeff's decades are evenly spaced.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from .plots import new_figure, save_png

__all__ = ["strip_plots", "medians_by_value", "METRICS"]

# row key -> axis label
METRICS = {"test_accuracy": "test accuracy (%)", "percent_pruned": "weights pruned (%)"}
_JITTER = 0.15  # half-width of the horizontal scatter, in category units


def medians_by_value(rows: Sequence[dict], param: str, metric: str) -> dict[Any, float]:
    """``{setting: median of metric}`` over rows with that setting, settings in increasing order.
    Rows missing the parameter or with a non-finite metric are ignored."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        value, y = row.get(param), row.get(metric)
        if value is None or y is None or not math.isfinite(float(y)):
            continue
        groups[value].append(float(y))
    return {v: float(np.median(groups[v])) for v in sorted(groups)}


def _label(value: Any) -> str:
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.0e}"
    return str(value)


def strip_plots(rows: list[dict], png_path, params: Sequence[str] = ("n_iter", "n_prune", "l1_coeff")) -> None:
    """Write the 2 x len(params) strip-plot figure of a sweep to ``png_path``.

    ``rows`` carry ``n_iter, n_prune, l1_coeff, test_accuracy, percent_pruned`` (one per run).
    Jitter is drawn from a fixed seed, so the same rows give the same PNG.
    """
    rng = np.random.default_rng(0)
    fig = new_figure(3.6 * max(len(params), 1), 6.4)
    axes = fig.subplots(len(METRICS), max(len(params), 1), squeeze=False)
    for c, param in enumerate(params):
        for r, (metric, ylabel) in enumerate(METRICS.items()):
            ax = axes[r, c]
            medians = medians_by_value(rows, param, metric)
            index = {v: i for i, v in enumerate(medians)}
            pts = [(index[row[param]], float(row[metric])) for row in rows
                   if row.get(param) in index and row.get(metric) is not None
                   and math.isfinite(float(row[metric]))]
            if pts:
                xs, ys = np.array(pts).T
                ax.scatter(xs + rng.uniform(-_JITTER, _JITTER, len(xs)), ys, s=14, alpha=0.7,
                           color=f"C{r}", label="runs")
            for i, med in enumerate(medians.values()):
                ax.hlines(med, i - 2 * _JITTER, i + 2 * _JITTER, colors="k", linestyles="dashed",
                          label="median" if i == 0 else None)
            ax.set_xticks(range(len(medians)), [_label(v) for v in medians])
            ax.set_xlim(-0.5, max(len(medians), 1) - 0.5)
            ax.set_xlabel(param)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, axis="y")
            if pts and c == 0:
                ax.legend(loc="best", fontsize="small")
    fig.suptitle("Effect of hyperparameters on accuracy and percent pruned")
    save_png(fig, png_path)
