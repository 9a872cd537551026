"""Wall time of a 7-value, one-iteration causal sweep: every run doing all its own work (before)
against the shared pretraining and record-once-solve-many (after), side by side in one process.

Before: each L1_coeff pretrains, trains and records iteration 1's epochs, solves and post-trains.
After: ``causal-prune sweep`` pretrains once (pretrain.py), trains and records iteration 1 once
(shared.py) and runs only the Lasso and the post-training per value. The masks of the two must be
identical; the section checks it and reports it beside the ratio.

    .venv/bin/python bench/bench_sweep.py [--quick]

Full: LeNet on Fashion-MNIST (digits with the mlp if it is missing), the demo protocol with one
iteration, 20 steps per epoch and one post-training epoch. Quick: the `quick` preset on digits.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from causalprune.config import Config, config_from_dict
from causalprune.errors import DataError
from causalprune.masks import read_masks
from causalprune.paths import RunPaths
from causalprune.presets import preset_values

__all__ = ["run", "markdown", "goals", "L1_GRID"]

L1_GRID = tuple(float(f"{v:.3g}") for v in np.geomspace(1e-15, 1e-13, 7))
QUICK_L1 = tuple(float(f"{v:.3g}") for v in np.geomspace(1e-13, 1e-11, 7))


def _base(quick: bool, out: str) -> Config:
    from causalprune.data import load_data_for

    if quick:
        return config_from_dict(preset_values("quick"), Config()).replace(n_iter=1, n_post=1, out=out, device="cpu")
    cfg = config_from_dict(preset_values("demo"), Config()).replace(n_iter=1, n_post=1, max_steps_per_epoch=20,
                                                                    out=out, device="cpu")
    try:
        load_data_for(cfg)
    except DataError:
        cfg = cfg.replace(model="mlp", dataset="digits")
    return cfg


def run(quick: bool = False) -> dict:
    from causalprune.experiment import Experiment
    from causalprune.sweep import SweepSpec, run_sweep

    grid = QUICK_L1 if quick else L1_GRID
    with tempfile.TemporaryDirectory() as tmp:
        before_cfg = _base(quick, str(Path(tmp) / "before")).replace(share_pretraining=False)
        t0 = time.perf_counter()
        before = []
        for l1 in grid:  # what a sweep did before: every run alone
            cfg = before_cfg.replace(l1_coeff=l1)
            Experiment(cfg, log=lambda m: None).run()
            before.append(cfg.run_dir())
        before_s = time.perf_counter() - t0
        after_cfg = _base(quick, str(Path(tmp) / "after"))
        t0 = time.perf_counter()
        rows, _ = run_sweep(after_cfg, SweepSpec(l1_grid=grid, baselines=()))
        after_s = time.perf_counter() - t0
        same = all(_same(RunPaths(a).final_masks, RunPaths(r["run_dir"]).final_masks)
                   for a, r in zip(before, rows))
        pruned = [r.get("percent_pruned") for r in rows]
    return {"quick": quick, "model": after_cfg.model, "dataset": after_cfg.dataset, "l1_grid": list(grid),
            "n_pre": after_cfg.n_pre, "n_prune": after_cfg.n_prune, "n_post": after_cfg.n_post,
            "steps_per_epoch": after_cfg.max_steps_per_epoch, "before_s": before_s, "after_s": after_s,
            "speedup": before_s / after_s, "masks_identical": same, "percent_pruned": pruned,
            "torch_threads": torch.get_num_threads()}


def _same(a: Path, b: Path) -> bool:
    ma, mb = read_masks(a), read_masks(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def markdown(res: dict) -> str:
    pp = ", ".join(f"{p:.1f}" for p in res["percent_pruned"])
    return "\n".join([
        f"{res['model']} on {res['dataset']}, 7 L1_coeff values ({res['l1_grid'][0]:.0e} to {res['l1_grid'][-1]:.0e}), "
        f"one iteration: N_pre {res['n_pre']}, N_prune {res['n_prune']}, N_post {res['n_post']}, "
        f"{res['steps_per_epoch'] or 'all'} steps per epoch, {res['torch_threads']} torch threads"
        + (" -- quick run" if res["quick"] else ""),
        "",
        "| sweep | wall s |",
        "|---|---:|",
        f"| every run alone (before) | {res['before_s']:.1f} |",
        f"| pretrain once, record once, solve per value (after) | {res['after_s']:.1f} |",
        "",
        f"speed-up: **{res['speedup']:.2f}x**; masks identical to the runs made alone: {res['masks_identical']}; "
        f"% pruned per value: {pp}",
    ])


def goals(res: dict) -> list[dict]:
    from benchutil import goal

    return [goal("7-value one-iteration sweep, before / after", res["speedup"], 1.0, op=">", unit="x"),
            goal("masks identical to separate runs", float(res["masks_identical"]), 1.0, op=">=")]


if __name__ == "__main__":
    from benchutil import section_main

    section_main(run, markdown, __doc__, "the quick preset on digits, < 1 min")
