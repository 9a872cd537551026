"""Streaming form of the cumulative-penalty Lasso: fit while training, store nothing per step.

Each optimizer step's features are fed once, in arrival order, so the memory is O(d) (γ and q)
instead of the T×d recording. This is one epoch of the reference solver without shuffling:
fed the rows 0..n-1 it reproduces ``solve_reference(..., shuffle=False, epochs=1)``; on CPU
bit for bit (same chunked float64 dot, same float32 rounding).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError
from .blocks import FeatureBlock, LassoSchedule
from .reference import BACKENDS

__all__ = ["OnlineLasso", "solve_online"]


class OnlineLasso:
    """Streaming variant: one pass, samples in the order they arrive, O(d) memory (no per-step storage).

    ``schedule.epochs`` is ignored (there is one pass); lr0, power_t and grad_clip apply.
    ``backend`` as in :func:`solve_reference` ("auto", "numba" or "torch").
    """

    def __init__(self, dims: list[int], l1_coeff: float, *, schedule: LassoSchedule = LassoSchedule(),
                 device: str | torch.device = "cpu", backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown Lasso backend {backend!r}; choose one of {BACKENDS}")
        if backend == "numba" and torch.device(device).type != "cpu":
            raise ConfigError("backend 'numba' needs device='cpu'; use backend='torch' or 'auto'")
        if not dims or any(int(d) != d or d < 0 for d in dims):
            raise ConfigError(f"OnlineLasso needs a list of non-negative block sizes, got {dims}")
        if not (math.isfinite(l1_coeff) and l1_coeff >= 0):
            raise ConfigError(f"l1_coeff must be a finite number >= 0, got {l1_coeff}")
        self.dims = [int(d) for d in dims]
        self.l1_coeff = float(l1_coeff)
        self.schedule = schedule
        self.device = torch.device(device)
        # "auto": fused numba kernels on CPU, torch ops elsewhere (same arithmetic)
        self.use_numba = backend == "numba" or (backend == "auto" and self.device.type == "cpu")
        self._gamma = [torch.zeros(d, dtype=torch.float32, device=self.device) for d in self.dims]
        self._q = [torch.zeros_like(g) for g in self._gamma]
        self._bad: torch.Tensor | None = None  # any non-finite device target so far (checked in gammas)
        self.steps = 0  # s of docs/method.md §2: samples seen so far
        self.u = 0.0  # total penalty each coordinate may have received so far

    def _check(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != len(self.dims):
            raise DataError(f"update got {len(xs)} feature vectors for {len(self.dims)} blocks")
        out = []
        for k, (x, d) in enumerate(zip(xs, self.dims)):
            x = x.detach().reshape(-1)
            if x.numel() != d or not x.is_floating_point():
                raise DataError(f"block {k}: expected {d} floating-point features, got {tuple(x.shape)} {x.dtype}")
            out.append(x.to(self.device))
        return out

    def update(self, xs: list[torch.Tensor], y: float | torch.Tensor) -> None:
        """Consume one sample: ``xs`` holds one (already computed) feature vector per block.

        ``y`` is a number or a one-element tensor. On an accelerator a tensor ``y`` stays there:
        reading it on the host would wait for the device at every training step, so its check
        for NaN/inf is deferred to :meth:`gammas`."""
        xs = self._check(xs)
        if isinstance(y, torch.Tensor):
            y = y.detach().reshape(())
            if self.use_numba or y.device.type == "cpu":
                y = float(y)
            else:
                bad = ~torch.isfinite(y)
                self._bad = bad if self._bad is None else self._bad | bad
        if not isinstance(y, torch.Tensor) and not math.isfinite(y):
            raise DataError(f"update got a non-finite target y={y}; the recorded loss diverged")
        self.steps += 1
        eta = float(self.schedule.lr0 / np.float64(self.steps) ** self.schedule.power_t)
        self.u += eta * self.l1_coeff
        clip = float(self.schedule.grad_clip)
        if self.use_numba:
            from .kernels import as_numba_array
            from .online_cpu import dot_acc, update_block

            flats = [as_numba_array(x.reshape(1, -1))[0] for x in xs]
            acc = 0.0
            for g, x in zip(self._gamma, flats):
                acc = dot_acc(acc, g.numpy(), x)
            r = acc - float(y)
            for g, q, x in zip(self._gamma, self._q, flats):
                update_block(x, g.numpy(), q.numpy(), r, eta, self.u, clip)
            return
        from .torch_path import coord_update_, f32, residual

        x32 = [x.float() for x in xs]
        # y as a Python number or a device tensor: never a host-to-device copy per step
        r = residual(self._gamma, x32, y.to(torch.float64) if isinstance(y, torch.Tensor) else float(y)).float()
        for g, q, x in zip(self._gamma, self._q, x32):
            coord_update_(g, q, x, r, f32(eta), f32(self.u), f32(clip))

    def gammas(self) -> list[torch.Tensor]:
        """Current γ per block (float32 copies); a weight is pruned iff its γ is exactly 0."""
        if self._bad is not None and bool(self._bad):
            raise DataError("update got a non-finite target y; the recorded loss diverged")
        return [g.clone() for g in self._gamma]

    def state_dict(self) -> dict:
        """Everything needed to resume: tensors plus plain numbers (torch.load(weights_only=True)-safe)."""
        if self._bad is not None and bool(self._bad):  # the deferred check must not be lost on a resume
            raise DataError("update got a non-finite target y; the recorded loss diverged")
        return {"dims": list(self.dims), "l1_coeff": self.l1_coeff, "steps": self.steps, "u": self.u,
                "schedule": dataclasses.asdict(self.schedule),
                "gamma": [g.detach().cpu().clone() for g in self._gamma],
                "q": [q.detach().cpu().clone() for q in self._q]}

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; refuses a state of another problem."""
        try:
            dims, gam, qs = list(state["dims"]), state["gamma"], state["q"]
            steps, u, l1, sched = int(state["steps"]), float(state["u"]), float(state["l1_coeff"]), state["schedule"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"OnlineLasso state is incomplete ({exc}); delete it to restart the fit") from exc
        if dims != self.dims or l1 != self.l1_coeff or LassoSchedule(**sched) != self.schedule:
            raise CheckpointError("OnlineLasso state belongs to a different problem (block sizes, l1_coeff or "
                                  "schedule differ); delete it or build the solver with the saved settings")
        want = [(d,) for d in dims]
        if [tuple(t.shape) for t in gam] != want or [tuple(t.shape) for t in qs] != want:
            raise CheckpointError("OnlineLasso state has tensors of the wrong size; delete it to restart the fit")
        for dst, src in zip(self._gamma + self._q, list(gam) + list(qs)):
            dst.copy_(src.to(device=self.device, dtype=torch.float32))
        self.steps, self.u = steps, u


def solve_online(blocks: list[FeatureBlock], y: torch.Tensor, l1_coeff: float, *,
                 schedule: LassoSchedule = LassoSchedule(), generator: torch.Generator | None = None,
                 progress: bool = False) -> list[torch.Tensor]:
    """Feed samples 0..n-1 of ``blocks`` once, in order, to an :class:`OnlineLasso` (arrival order:
    ``generator`` is accepted for the shared ``SOLVERS`` signature and not used)."""
    from tqdm.auto import tqdm

    from .blocks import block_features, validate_problem

    n = validate_problem(blocks, y, l1_coeff)
    solver = OnlineLasso([b.dim for b in blocks], l1_coeff, schedule=schedule, device=blocks[0].data.device)
    ys = y.detach().double().cpu().tolist()
    for i in tqdm(range(n), desc="online lasso", disable=not progress or None):
        solver.update([block_features(b, i)[0] for b in blocks], ys[i])
    return solver.gammas()
