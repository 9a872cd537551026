"""The solver that produced the paper's masks: per-sample SGD with a cumulative L1 penalty.

Method-facts §2 (Tsuruoka et al. 2009): γ starts at zero, no intercept, step
η_s = lr0 / s**power_t with s counting samples over all epochs, u_s = u_{s-1} + η_s·l1_coeff,
a plain gradient step on ½(γ·x_i − y_i)² (gradient clipped to ±grad_clip), then each
coordinate is pulled towards zero (never across it) by the penalty it has not yet received.
A weight is pruned iff its γ ends exactly at 0.0.

Interchangeable back ends compute it: on CPU the coordinate-parallel numba kernel where the
coordinates decouple exactly (coord_cpu.py, decoupling.py) and the coupled per-sample fused
kernel (fused_cpu.py) from the first step where they may not, so the result is the coupled
kernel's bit for bit; vectorised torch ops elsewhere (torch_path.py). All run the same float32
arithmetic on float32 state (γ, q), with η and u accumulated in float64 and rounded once per
step, and dot products in float64 (kernels.py says why); the torch path agrees with the numba
ones to the rounding of those dot products.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, DataError
from .blocks import FeatureBlock, LassoSchedule, step_schedule, validate_problem, visit_order

__all__ = ["BACKENDS", "solve_reference", "lasso_sgd"]

#: "numba": CPU kernels, coordinate-parallel where exact, else coupled (CPU tensors only);
#: "coupled": the per-sample fused CPU kernel alone (the same γ bit for bit; for comparisons);
#: "torch": vectorised torch ops (any device); "triton": the coordinate-parallel Triton kernel
#: where exact, else "torch" (CUDA tensors, or any under TRITON_INTERPRET=1); "auto": numba for
#: CPU tensors, triton (when installed) on CUDA, torch otherwise.
BACKENDS = ("auto", "numba", "coupled", "torch", "triton")
_CPU_ONLY = ("numba", "coupled")


def solve_reference(blocks: list[FeatureBlock], y: torch.Tensor, l1_coeff: float, *,
                    schedule: LassoSchedule = LassoSchedule(), shuffle: bool = True,
                    generator: torch.Generator | None = None, progress: bool = False,
                    backend: str = "auto") -> list[torch.Tensor]:
    """Fit one cumulative-penalty Lasso whose feature vector is the concatenation of ``blocks``.

    The dot product γ·x_i runs over all blocks jointly (one regression may span several layers,
    or the three momentum features). With ``shuffle`` each epoch visits a
    ``torch.randperm(n, generator=generator)``; otherwise 0..n-1. Returns one float32 γ per
    block, shape (d_b,), on the blocks' device; blocks on the host with ``y`` on an accelerator
    (a spilled recording fitted for a GPU run) are streamed there in chunks (streamed.py), and
    γ is returned on ``y``'s device.
    """
    n = validate_problem(blocks, y, l1_coeff)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Lasso backend {backend!r}; choose one of {BACKENDS}")
    device = blocks[0].data.device
    if backend in _CPU_ONLY and device.type != "cpu":
        raise ConfigError(f"backend {backend!r} needs CPU tensors, got {device}; use backend='torch' or 'auto'")
    if n == 0:
        return [torch.zeros(b.dim, dtype=torch.float32, device=device) for b in blocks]
    order = visit_order(n, int(schedule.epochs), shuffle, generator)
    etas, us = step_schedule(len(order), l1_coeff, schedule)
    clip = float(schedule.grad_clip)
    if device.type == "cpu" and y.device.type != "cpu" and backend in ("auto", "torch", "triton"):
        # host-resident features (a spilled recording) fitted for an accelerator: stream them there,
        # by columns to the coordinate-parallel kernel where that is exact, else by visits
        from .streamed import solve_streamed

        exact = False
        if backend == "triton" or (backend == "auto" and y.device.type == "cuda" and _has_triton()):
            from .coord_triton import solve_coord_triton_streamed

            gammas, exact = solve_coord_triton_streamed(blocks, y, order, etas, us, clip, y.device)
        if not exact:
            gammas = solve_streamed(blocks, y, order, etas, us, clip, y.device, progress)
    elif backend == "triton" or (backend == "auto" and device.type == "cuda" and _has_triton()):
        from .coord_triton import solve_coord_triton

        gammas, exact = solve_coord_triton(blocks, y, order, etas, us, clip)
        if not exact:  # the coordinates may couple: today's GPU path, whose result this reproduces
            from .torch_path import solve_torch

            gammas = solve_torch(blocks, y, order, etas, us, clip, progress)
    elif backend == "torch" or (backend == "auto" and device.type != "cpu"):
        from .torch_path import solve_torch

        gammas = solve_torch(blocks, y, order, etas, us, clip, progress)
    elif backend == "coupled":
        from .fused_cpu import solve_fused

        gammas = solve_fused(blocks, y, order, etas, us, clip, progress=progress)
    else:
        from .coord_cpu import solve_coordinate

        gammas, _ = solve_coordinate(blocks, y, order, etas, us, clip, progress=progress)
    # checking the T×d features up front would cost a pass over them; a NaN γ reveals them
    # (and would otherwise count as "kept", since NaN != 0)
    if not all(bool(torch.isfinite(g).all()) for g in gammas):
        raise DataError("the Lasso produced NaN/inf: some features are NaN/inf or overflow float32; "
                        "check the recording (or rescale the block)")
    return gammas


def _has_triton() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def lasso_sgd(X: torch.Tensor, y: torch.Tensor, l1_coeff: float, *, lr0: float = 1e-2,
              power_t: float = 0.25, epochs: int = 3, shuffle: bool = True,
              generator: torch.Generator | None = None, backend: str = "auto") -> torch.Tensor:
    """Single-matrix form: ``X`` (T, d) features, ``y`` (T,) targets; returns γ (d,) float32.

    Equivalent to ``solve_reference([FeatureBlock(X)], y, ...)[0]``.
    """
    schedule = LassoSchedule(lr0=lr0, power_t=power_t, epochs=epochs)
    return solve_reference([FeatureBlock(X)], y, l1_coeff, schedule=schedule, shuffle=shuffle,
                           generator=generator, backend=backend)[0]
