"""Where the reference Lasso stops being decoupled on gpu_check's LeNet overhead input (BENCHMARKS.md §8).

gpu_check.py times LeNet's pruning phase on synthetic CIFAR-shaped input: 24 recorded SGD steps
(batch 512, lr 1e-3) tiled to T = 1,060 rows. On that recording the Triton path found a coupled
step and handed the whole fit to the step-by-step torch path. This runs the same recording's
per-layer fits with the CPU coordinate solver, which reports how many visits ran decoupled before
the first step that may couple (solvers/decoupling.py).

    OMP_NUM_THREADS=1 python bench/coupling_check.py

The visit at which a fit couples depends on the recording's last bits, so on the thread count
of the SGD steps; with one thread it prints 323, 27, 15 and 288 of 3,177 (conv1, conv2, fc1,
fc2), with two 3,177, 45, 175 and 3,177. Either way some layer couples early.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import sgd_step  # noqa: E402

from causalprune.config import Config  # noqa: E402
from causalprune.data import dataset_spec  # noqa: E402
from causalprune.masks import apply_masks, ones_masks  # noqa: E402
from causalprune.models import build_model  # noqa: E402
from causalprune.record.recorder import Recorder  # noqa: E402
from causalprune.solvers import LassoSchedule  # noqa: E402
from causalprune.solvers.blocks import step_schedule, visit_order  # noqa: E402
from causalprune.solvers.coord_cpu import solve_coordinate  # noqa: E402

T, STEPS, BATCH, LR = 1_060, 24, 512, 1e-3  # as gpu_check.py's GPU sizes for the overhead


def main() -> int:
    torch.manual_seed(0)
    model = build_model("lenet", dataset_spec("synthetic", "lenet", synthetic_shape=(3, 32, 32)))
    masks = ones_masks(model)
    apply_masks(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    rec = Recorder(model, masks, lr=LR, max_steps=T, dtype="bf16", device=torch.device("cpu"))
    for _ in range(STEPS):
        sgd_step(model, opt, x, labels, callbacks=[rec])
    n = rec.steps
    for start in range(n, T, n):  # tiled to T as gpu_check.py does
        m = min(n, T - start)
        rec.buffer[start:start + m].copy_(rec.buffer[:m])
        rec.losses[start:start + m].copy_(rec.losses[:m])
    rec.steps = T
    y, cfg, gen = rec.targets(lag=1), Config(), torch.Generator().manual_seed(0)
    print(f"mean |y| = {float(y.abs().mean()):.3g}")
    for lf in rec.features(momentum=False, granularity="weight"):
        order = visit_order(int(y.numel()), cfg.lasso_epochs, True, gen)
        etas, us = step_schedule(len(order), cfg.l1_coeff, LassoSchedule())
        _, run = solve_coordinate(lf.blocks, y, order, etas, us, 1e12)
        print(f"{lf.key}: {run.exact_steps:,} of {run.steps:,} visits decoupled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
