"""Bar chart of the top Hessian eigenvalues of several runs (paper Fig. 3: flatter minima have
smaller top eigenvalues)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .plots import new_figure, save_png

__all__ = ["plot_eigenvalues"]


def plot_eigenvalues(named: Mapping[str, Sequence[float]], png_path,
                     title: str = "Top Hessian eigenvalues of the final models") -> None:
    """Grouped bars: one group per run, one bar per eigenvalue rank (lambda_1 first). A symmetric
    log scale is used when the values span more than two decades, so small ones stay visible."""
    names = list(named)
    k = max((len(v) for v in named.values()), default=0)
    fig = new_figure(max(6.0, 2.0 + 0.3 * len(names) * max(k, 1)), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(k, 1)
    x = np.arange(len(names))
    values = np.full((len(names), k), np.nan)
    for i, n in enumerate(names):
        v = sorted(named[n], reverse=True)
        values[i, :len(v)] = v
    for j in range(k):
        ax.bar(x + (j - (k - 1) / 2) * width, values[:, j], width, label=f"lambda_{j + 1}", color=f"C{j}")
    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    if finite.size and finite.max() / finite.min() > 100:
        ax.set_yscale("symlog", linthresh=float(finite.min()))
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize="small")
    ax.set_xlabel("run")
    ax.set_ylabel("eigenvalue of the loss Hessian (loss units / weight^2)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    if k:
        ax.legend(title="rank", fontsize="small", ncols=min(k, 5))
    save_png(fig, png_path)
