"""2-D loss surfaces around a minimum with filter-normalised directions (paper Appendix B, Fig. 4-5).

Li et al. (2018): draw two random directions u1, u2 from N(0, 1), rescale every filter of each to
the norm of the matching filter of the trained network (paper eq. 20), and evaluate
``f(theta* + a u1 + b u2)`` on a grid. The plot shows ``log(1 + f)``.

Masks are respected: pruned coordinates stay zero in the directions, so the surface lives in the
pruned network's own parameter space. A filter whose weights are all pruned has norm 0; it gets a
zero direction instead of 0/0 = NaN (a known failure of the reference loss-landscape code).
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..storage import write_bytes
from .plots import new_figure, save_png
from .targets import analysis_targets, eval_mode, masked_point, mean_loss, reiterable

__all__ = ["filter_normalized_direction", "loss_surface", "save_surface"]

Tensor = torch.Tensor


def _filter_view(t: Tensor) -> Tensor:
    """Rows = filters: a conv's output channels, a Linear's output rows; a 1-D tensor (bias) is
    one 'filter' per entry, so its direction has the entry's magnitude with a random sign."""
    return t.reshape(t.shape[0], -1) if t.ndim >= 1 else t.reshape(1, 1)


def filter_normalized_direction(params: dict[str, Tensor], masks: dict[str, Tensor] | None,
                                generator: torch.Generator) -> dict[str, Tensor]:
    """A random N(0, 1) direction, each filter rescaled to the norm of the trained filter (eq. 20).

    ``params`` are the trained tensors by name; ``masks`` (same names, 1 = kept; a missing name =
    all kept) zero the pruned coordinates of both the direction and the reference norm. Draws from
    ``generator`` in the order of ``params``. Never returns NaN: a zero-norm filter gets zeros.
    """
    masks = masks or {}
    out: dict[str, Tensor] = {}
    for name, p in params.items():
        p = p.detach()
        d = torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)
        m = masks.get(name)
        if m is not None:
            m = (m != 0).to(device=p.device, dtype=p.dtype)
            d, p = d * m, p * m
        d_rows, p_rows = _filter_view(d), _filter_view(p)
        d_norm = d_rows.norm(dim=1, keepdim=True)
        p_norm = p_rows.norm(dim=1, keepdim=True)
        scale = torch.where(d_norm > 0, p_norm / d_norm.clamp_min(torch.finfo(p.dtype).tiny),
                            torch.zeros_like(d_norm))
        out[name] = (d_rows * scale).reshape(p.shape)
    return out


def loss_surface(model: nn.Module, loss_fn: Callable, batches: Iterable, *,
                 masks: Mapping[str, Tensor] | None = None, steps: int = 21, span: float = 1.0,
                 seed: int = 0, include_bias: bool = False, progress: bool = True) -> dict[str, np.ndarray]:
    """Mean loss over ``batches`` on a ``steps x steps`` grid ``theta* + a u1 + b u2``.

    Returns ``{"alpha": (steps,), "beta": (steps,), "loss": (steps, steps)}`` with
    ``loss[i, j]`` at ``(alpha[i], beta[j])`` and alpha, beta evenly spaced in [-span, span].
    Only the prunable weights move (biases too with ``include_bias``; BatchNorm never): other
    tensors have a zero direction. The model runs in eval mode and is never written to (it is
    evaluated through ``functional_call``), so its weights and modes are exactly as before.
    """
    if steps < 2 or not span > 0:
        raise ConfigError(f"need steps >= 2 and span > 0 (got steps={steps}, span={span})")
    targets = analysis_targets(model, masks, include_bias=include_bias)
    batches = reiterable(batches)
    point = masked_point(targets)
    params = {t.key: p for t, p in zip(targets, point)}
    tmasks = {t.key: t.mask for t in targets if t.mask is not None}
    gen = torch.Generator().manual_seed(seed)
    u1 = list(filter_normalized_direction(params, tmasks, gen).values())
    u2 = list(filter_normalized_direction(params, tmasks, gen).values())
    names = [t.param_name for t in targets]
    alpha = np.linspace(-span, span, steps)
    beta = np.linspace(-span, span, steps)
    loss = np.empty((steps, steps))
    with eval_mode(model), torch.no_grad(), tqdm(total=steps * steps, desc="loss surface",
                                                  disable=None if progress else True) as bar:
        for i, a in enumerate(alpha):
            for j, b in enumerate(beta):
                values = [p + float(a) * d1 + float(b) * d2 for p, d1, d2 in zip(point, u1, u2)]
                loss[i, j] = float(mean_loss(model, loss_fn, batches, names, values))
                bar.update(1)
    return {"alpha": alpha, "beta": beta, "loss": loss}


def save_surface(surface: Mapping[str, np.ndarray], npz_path, png_path, title: str) -> None:
    """Write the grid as ``.npz`` (alpha, beta, loss) and a PNG with a 3-D surface and a contour
    map of ``log(1 + loss)`` (the paper's z-scale), both atomically."""
    alpha, beta = np.asarray(surface["alpha"]), np.asarray(surface["beta"])
    loss = np.asarray(surface["loss"], dtype=float)
    buf = io.BytesIO()
    np.savez(buf, alpha=alpha, beta=beta, loss=loss)
    write_bytes(npz_path, buf.getvalue())

    # Clip at 0 so that a slightly negative loss (e.g. a custom loss) does not give NaN, and leave
    # diverged points (inf/NaN) as holes rather than letting them break the colour scale.
    z = np.log1p(np.clip(loss, 0.0, None))
    z = np.where(np.isfinite(z), z, np.nan)
    A, B = np.meshgrid(alpha, beta, indexing="ij")
    fig = new_figure(11, 4.6)
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    surf = ax3.plot_surface(A, B, z, cmap="viridis", linewidth=0, antialiased=True)
    ax3.set_xlabel("alpha (direction 1)")
    ax3.set_ylabel("beta (direction 2)")
    ax3.set_zlabel("log(1 + loss)")
    ax3.locator_params(axis="x", nbins=5)
    ax3.locator_params(axis="y", nbins=5)
    ax2 = fig.add_subplot(1, 2, 2)
    cs = ax2.contourf(A, B, z, levels=20, cmap="viridis")
    ax2.contour(A, B, z, levels=20, colors="k", linewidths=0.3)
    ax2.plot([0], [0], marker="*", color="red", markersize=10, linestyle="none", label="trained weights")
    ax2.legend(loc="upper right", fontsize="small")
    ax2.set_xlabel("alpha (direction 1)")
    ax2.set_ylabel("beta (direction 2)")
    ax2.set_aspect("equal")
    fig.colorbar(cs, ax=ax2, label="log(1 + loss)")
    fig.colorbar(surf, ax=ax3, shrink=0.6, pad=0.1, label="log(1 + loss)")
    fig.suptitle(title)
    save_png(fig, png_path)
