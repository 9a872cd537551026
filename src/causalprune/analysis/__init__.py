"""The paper's analyses as pure functions: flat minima (Hessian spectrum, loss landscape),
mask overlap, the phase-shift figure of merit, and their figures (paper §1, §4.1-4.2, App. B).

Everything here reads a model, batches, masks or result rows and returns numbers or writes a
PNG/NPZ; nothing reaches into training. All analyses respect masks: pruned coordinates are left out
of Hessian-vector products and landscape directions, biases and BatchNorm are excluded by default,
and BatchNorm runs in eval mode.
"""

from .hessian import power_top_k, top_eigenvalues
from .hparams import medians_by_value, strip_plots
from .landscape import filter_normalized_direction, loss_surface, save_surface
from .overlap import overlap_matrix, overlap_per_layer, pairwise_overlaps, percent_pruned, plot_overlaps
from .phase import median_curve, transition_width
from .plots import plot_phase
from .targets import Target, analysis_targets, eval_mode

__all__ = [
    "top_eigenvalues",
    "power_top_k",
    "filter_normalized_direction",
    "loss_surface",
    "save_surface",
    "overlap_matrix",
    "overlap_per_layer",
    "percent_pruned",
    "pairwise_overlaps",
    "plot_overlaps",
    "transition_width",
    "median_curve",
    "plot_phase",
    "strip_plots",
    "medians_by_value",
    "Target",
    "analysis_targets",
    "eval_mode",
]
