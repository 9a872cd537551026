"""Figure helpers (matplotlib, Agg, PNG at 120 dpi) and the phase-shift figure (paper Fig. 1a).

Figures are built on a bare ``matplotlib.figure.Figure`` with an Agg canvas, never through
``pyplot``: no global state, no backend switch in the caller's process, nothing left open.
PNGs are written atomically through :mod:`causalprune.storage`.
"""

from __future__ import annotations

import io
import math
from typing import Any

from ..storage import write_bytes
from .phase import median_curve, transition_width

__all__ = ["DPI", "new_figure", "save_png", "plot_phase"]

DPI = 120


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure (inches) with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path) -> None:
    """Render ``fig`` as PNG at :data:`DPI` and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    write_bytes(path, buf.getvalue())


def plot_phase(curves: dict[str, list[tuple[float, float, int]]], png_path,
               title: str = "Accuracy vs percent pruned") -> None:
    """Accuracy vs percent pruned per method: raw runs as dots, the median over seeds as a line,
    the min-max band across seeds shaded; the legend gives each method's transition width
    (see :func:`causalprune.analysis.phase.transition_width`). Accuracies are plotted as given
    (pass percentages for the "%" axis label to hold)."""
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for i, (method, points) in enumerate(curves.items()):
        color = f"C{i}"
        curve = median_curve(points)
        width = transition_width(curve["x"], curve["median"]) if len(curve["x"]) else math.nan
        label = f"{method} (transition width {width:.1f} pp)" if math.isfinite(width) else method
        ax.plot(curve["x"], curve["median"], color=color, marker="o", markersize=3, label=label)
        ax.fill_between(curve["x"], curve["min"], curve["max"], color=color, alpha=0.2, linewidth=0)
        if points:
            xs, ys, _ = zip(*points)
            ax.scatter(xs, ys, color=color, s=8, alpha=0.5)
    ax.set_xlabel("weights pruned (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize="small", title="median over seeds, band = min-max")
    save_png(fig, png_path)
