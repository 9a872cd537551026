"""Top Hessian eigenvalues at a minimum (paper §4.2, Fig. 3, Appendix B).

The paper measures flatness by the top eigenvalues of the loss Hessian, computed with the
power iteration of PyHessian (Yao et al., 2020): Hessian-vector products over the data, and
deflation against the eigenvectors already found. Two things differ from PyHessian here:

* masks are respected: the operator is ``P H P`` on the kept coordinates only (``P`` zeroes pruned
  weights), evaluated at the masked point, so the pruned network's own Hessian is measured;
* the values returned are the largest *algebraic* eigenvalues. Plain power iteration finds the
  largest in magnitude, which at a saddle or a non-converged point can be a negative one. Each
  time it returns a negative value -mu, the search is redone on ``H + mu I`` (same eigenvectors,
  spectrum shifted to >= 0 on the remaining subspace), whose dominant eigenvalue is the largest
  algebraic one plus mu.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import ConfigError
from .targets import analysis_targets, batch_loss, batch_size, eval_mode, masked_point, reiterable

__all__ = ["top_eigenvalues", "power_top_k", "hessian_vector_product"]

Vec = list[torch.Tensor]
Operator = Callable[[Vec], Vec]


def _dot(a: Vec, b: Vec) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def _scale(a: Vec, s: float) -> Vec:
    return [x * s for x in a]


def _axpy(alpha: float, x: Vec, y: Vec) -> Vec:
    """alpha * x + y."""
    return [alpha * xi + yi for xi, yi in zip(x, y)]


def _orthogonalise(v: Vec, basis: list[Vec]) -> Vec:
    # Deflation: remove the components along the eigenvectors already found, so the iteration
    # converges to the next eigenpair. Done at every step because round-off reintroduces them.
    for b in basis:
        v = _axpy(-_dot(v, b), b, v)
    return v


def _normalise(v: Vec) -> tuple[Vec, float]:
    norm = _dot(v, v) ** 0.5
    return (_scale(v, 1.0 / norm), norm) if norm > 0 else (v, 0.0)


def _dominant(op: Operator, v: Vec, basis: list[Vec], iters: int, tol: float) -> tuple[float, Vec]:
    """Power iteration on ``op`` restricted to the complement of ``basis``: the eigenvalue of
    largest magnitude (Rayleigh quotient) and its unit eigenvector."""
    v, _ = _normalise(_orthogonalise(v, basis))
    lam_old = None
    lam = 0.0
    for _ in range(iters):
        w = _orthogonalise(op(v), basis)
        lam = _dot(v, w)
        w, norm = _normalise(w)
        if norm == 0.0:  # op vanishes on what is left: every remaining eigenvalue is 0
            return 0.0, v
        v = w
        if lam_old is not None and abs(lam - lam_old) <= tol * max(abs(lam_old), 1e-30):
            break
        lam_old = lam
    return lam, v


def power_top_k(op: Operator, start: Callable[[], Vec], k: int, *, iters: int = 100,
                tol: float = 1e-4) -> tuple[list[float], list[Vec]]:
    """Top-``k`` (largest algebraic, descending) eigenpairs of a symmetric linear operator.

    ``op`` maps a vector (a list of tensors) to a vector; ``start()`` returns a fresh random start
    vector lying in the operator's domain (e.g. already masked). Pure: no module involved.
    """
    values: list[float] = []
    vectors: list[Vec] = []
    for _ in range(k):
        lam, v = _dominant(op, start(), vectors, iters, tol)
        if lam < 0:
            # The dominant one is negative (-mu): the largest algebraic is found as the
            # dominant eigenvalue of op + mu*I, whose spectrum on this subspace is >= 0.
            mu = -lam
            shifted = lambda x, mu=mu: _axpy(mu, x, op(x))  # noqa: E731
            lam_s, v = _dominant(shifted, start(), vectors, iters, tol)
            lam = lam_s - mu
        values.append(lam)
        vectors.append(v)
    order = sorted(range(k), key=lambda i: -values[i])  # deflation can return them out of order
    return [values[i] for i in order], [vectors[i] for i in order]


def hessian_vector_product(model: nn.Module, loss_fn: Callable, batches: Iterable,
                           names: list[str], point: Vec, masks: list[torch.Tensor | None]) -> Operator:
    """``v -> P H P v`` where H is the Hessian of the sample-weighted mean loss over ``batches``
    w.r.t. the parameters ``names`` at ``point``, and P multiplies by ``masks`` (None = keep all).
    Double backward, one batch at a time so only one batch's graph is alive."""

    def project(v: Vec) -> Vec:
        return [x * m if m is not None else x for x, m in zip(v, masks)]

    def op(v: Vec) -> Vec:
        v = project(v)
        out = [torch.zeros_like(p) for p in point]
        count = 0
        for x, y in batches:
            leaves = [p.detach().requires_grad_(True) for p in point]
            loss = batch_loss(model, loss_fn, x, y, names, leaves)
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            dot = sum((g * vi).sum() for g, vi in zip(grads, v) if g is not None)
            if isinstance(dot, torch.Tensor) and dot.requires_grad:
                hv = torch.autograd.grad(dot, leaves, allow_unused=True)
                n = batch_size(y)
                out = [o + n * h if h is not None else o for o, h in zip(out, hv)]
            count += batch_size(y)
        return project([o / max(count, 1) for o in out])

    return op


def top_eigenvalues(model: nn.Module, loss_fn: Callable, batches: Iterable, k: int = 5, *,
                    masks: dict[str, torch.Tensor] | None = None, iters: int = 100, tol: float = 1e-4,
                    include_bias: bool = False, generator: torch.Generator | None = None) -> list[float]:
    """Top-``k`` eigenvalues (largest algebraic, descending) of the Hessian of the mean loss over
    ``batches`` w.r.t. the prunable weights, restricted to the unpruned coordinates.

    Masks come from ``masks`` and/or the model's own ``weight_mask`` buffers; the loss is taken at
    ``theta * mask``. Biases join only with ``include_bias``; BatchNorm parameters never do. The
    model runs in eval mode (BatchNorm running stats, no dropout) and its modes are restored.
    Each eigenvalue stops after ``iters`` products or when its relative change is below ``tol``.
    ``generator`` draws the start vectors (default: a CPU generator seeded with 0).
    """
    if k < 1 or iters < 1 or tol < 0:
        raise ConfigError(f"need k >= 1, iters >= 1 and tol >= 0 (got k={k}, iters={iters}, tol={tol})")
    targets = analysis_targets(model, masks, include_bias=include_bias)
    kept = sum(int(t.mask.sum()) if t.mask is not None else t.param.numel() for t in targets)
    if k > kept:
        raise ConfigError(f"asked for {k} eigenvalues but only {kept} weights are unpruned; lower k")
    batches = reiterable(batches)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    point = masked_point(targets)
    tmasks = [t.mask for t in targets]

    def start() -> Vec:
        v = [torch.randn(p.shape, generator=gen, device=gen.device, dtype=p.dtype).to(p.device) for p in point]
        return [x * m if m is not None else x for x, m in zip(v, tmasks)]

    with eval_mode(model):
        op = hessian_vector_product(model, loss_fn, batches, [t.param_name for t in targets], point, tmasks)
        values, _ = power_top_k(op, start, k, iters=iters, tol=tol)
    return values
