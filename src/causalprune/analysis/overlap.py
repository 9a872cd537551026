"""Which weights two mask sets prune in common (paper §1, Fig. 1b).

A mask set maps ``"<fqn>.weight"`` to a 0/1 tensor, 1 = kept. The overlap of ``a`` and ``b`` is a
2x2 table of percentages of *all* weights in the set, laid out as in the paper's Fig. 1b with the
rows for ``a`` and the columns for ``b`` (index 0 = pruned, 1 = kept)::

    [[pruned by both,      pruned only by a],
     [pruned only by b,    pruned by neither]]

The four entries sum to 100.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import MaskError
from .plots import new_figure, save_png

__all__ = ["overlap_matrix", "overlap_per_layer", "percent_pruned", "pairwise_overlaps", "plot_overlaps"]

MaskSet = Mapping[str, torch.Tensor]


def _counts(ma: torch.Tensor, mb: torch.Tensor) -> np.ndarray:
    pa, pb = ma == 0, mb.to(ma.device) == 0
    both = int((pa & pb).sum())
    only_a = int((pa & ~pb).sum())
    only_b = int((~pa & pb).sum())
    return np.array([[both, only_a], [only_b, ma.numel() - both - only_a - only_b]], dtype=np.int64)


def _check_pair(a: MaskSet, b: MaskSet) -> None:
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))
        raise MaskError(f"the two mask sets cover different weights ({', '.join(diff[:5])}); "
                        "compare masks of the same model")
    for k in a:
        if tuple(a[k].shape) != tuple(b[k].shape):
            raise MaskError(f"mask {k} has shape {tuple(a[k].shape)} in one set and {tuple(b[k].shape)} "
                            "in the other; compare masks of the same model")
    if not sum(a[k].numel() for k in a):
        raise MaskError("the mask sets hold no weights; pass non-empty masks")


def _percent(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return 100.0 * counts / total if total else np.zeros((2, 2))


def overlap_matrix(a: MaskSet, b: MaskSet) -> np.ndarray:
    """2x2 percentages over all weights, rows = a, columns = b, index 0 = pruned (module docstring)."""
    _check_pair(a, b)
    return _percent(sum(_counts(a[k], b[k]) for k in a))


def overlap_per_layer(a: MaskSet, b: MaskSet) -> dict[str, np.ndarray]:
    """The same 2x2 table for each weight tensor, as percentages of that tensor's weights."""
    _check_pair(a, b)
    return {k: _percent(_counts(a[k], b[k])) for k in a}


def percent_pruned(masks: MaskSet) -> float:
    """Percent (0-100) of all weights in ``masks`` that are pruned (mask == 0)."""
    total = sum(m.numel() for m in masks.values())
    if not total:
        raise MaskError("the mask set holds no weights; pass non-empty masks")
    return 100.0 * sum(int((m == 0).sum()) for m in masks.values()) / total


def pairwise_overlaps(named_masks: Mapping[str, MaskSet]) -> list[dict]:
    """One row per unordered pair of runs (in the given order), ready for a CSV:
    ``run_a, run_b, pa, pb, both, only_a, only_b, neither`` (all percentages of all weights)."""
    rows = []
    for (na, a), (nb, b) in itertools.combinations(named_masks.items(), 2):
        (both, only_a), (only_b, neither) = overlap_matrix(a, b).tolist()
        rows.append({"run_a": na, "run_b": nb, "pa": percent_pruned(a), "pb": percent_pruned(b),
                     "both": both, "only_a": only_a, "only_b": only_b, "neither": neither})
    return rows


def plot_overlaps(named_masks: Mapping[str, MaskSet], png_path, title: str = "Overlap of pruned weights", *,
                  rows: Sequence[str] | None = None, cols: Sequence[str] | None = None) -> None:
    """Grid of annotated 2x2 heat maps (percent of all weights), one per pair of runs.

    With ``rows`` and ``cols`` (run names), cell (i, j) compares ``rows[i]`` (as a, y-axis) with
    ``cols[j]`` (as b, x-axis), e.g. causal runs against magnitude runs as in Fig. 1b. Without
    them every unordered pair is drawn (upper triangle). Axis labels give each run's % pruned.
    """
    names = list(named_masks)
    unknown = [n for n in [*(rows or []), *(cols or [])] if n not in named_masks]
    if unknown:
        raise MaskError(f"unknown run name(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if rows is None or cols is None:
        rows, cols = names[:-1], names[1:]
        pairs = {(i, j - 1) for i, j in itertools.combinations(range(len(names)), 2)}
    else:
        pairs = {(i, j) for i in range(len(rows)) for j in range(len(cols))}
    pruned = {n: percent_pruned(m) for n, m in named_masks.items()}
    fig = new_figure(2.6 * max(len(cols), 1) + 1.0, 2.4 * max(len(rows), 1) + 0.6)
    axes = fig.subplots(max(len(rows), 1), max(len(cols), 1), squeeze=False)
    image = None
    for (i, j), ax in np.ndenumerate(axes):
        if (i, j) not in pairs:
            ax.set_axis_off()
            continue
        na, nb = rows[i], cols[j]
        image = _heat_map(ax, overlap_matrix(named_masks[na], named_masks[nb]))
        ax.set_ylabel(f"{na}\n({pruned[na]:.1f}% pruned)", fontsize="small")
        ax.set_xlabel(f"{nb}\n({pruned[nb]:.1f}% pruned)", fontsize="small")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="weights (%)")
    fig.suptitle(title)
    save_png(fig, png_path)


def _heat_map(ax, pct: np.ndarray):
    image = ax.imshow(pct, vmin=0.0, vmax=100.0, cmap="Blues")
    for (r, c), v in np.ndenumerate(pct):
        ax.text(c, r, f"{v:.1f}%", ha="center", va="center", color="white" if v > 50 else "black")
    ax.set_xticks([0, 1], ["pruned", "kept"], fontsize="x-small")
    ax.set_yticks([0, 1], ["pruned", "kept"], fontsize="x-small")
    return image
