"""Flat-minima analyses of finished runs (paper §4.2, Fig. 3-5): top Hessian eigenvalues and the
loss landscape of each run's final model, written into ``RUN/analysis/``.

The final model is rebuilt from ``checkpoints/final.pt`` (its state has ``weight_orig`` and
``weight_mask``, so the model gets all-ones masks before ``load_state_dict``); the analyses then
use the masks it carries. Both use the same ``N`` training batches (the loss the network was
trained on), drawn with a fixed seed so a rerun measures the same function.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import Config, config_from_dict
from ..errors import CheckpointError, ConfigError
from ..masks import apply_masks, current_masks, ones_masks, sparsity
from ..paths import RunPaths
from ..storage import load_checkpoint, read_json, write_json

__all__ = ["AnalysisSettings", "load_final_model", "analysis_batches", "hessian_of_run", "landscape_of_run"]


@dataclass(frozen=True)
class AnalysisSettings:
    k: int = 5
    iters: int = 100
    tol: float = 1e-4
    grid: int = 21
    span: float = 1.0
    batches: int = 4
    seed: int = 0

    def validate(self) -> "AnalysisSettings":
        if self.k < 1 or self.iters < 1 or self.batches < 1 or self.grid < 2 or not self.span > 0 or self.tol < 0:
            raise ConfigError("need --k >= 1, --iters >= 1, --batches >= 1, --grid >= 2, --span > 0, --tol >= 0")
        return self


def load_final_model(run_dir: str | Path, device: str = "cpu", data_dir: str = ""):
    """(model with its final masks, Config, DataBundle) of a finished run."""
    from ..data import load_data_for
    from ..dist import resolve_device
    from ..models import build_model

    paths = RunPaths(run_dir)
    if not paths.final.is_file():
        raise CheckpointError(f"{paths.root} has no checkpoints/final.pt; finish the run first "
                              "(rerun its `causal-prune run` command)")
    ck = load_checkpoint(paths.final, "cpu")
    saved = ck.get("config") if isinstance(ck, dict) else None
    cfg = config_from_dict(saved or read_json(paths.config), Config())
    dev = resolve_device(device)
    data = load_data_for(cfg.replace(data_dir=data_dir or cfg.data_dir), dev)
    model = build_model(cfg.model, data.spec)
    apply_masks(model, ones_masks(model))  # the saved state has weight_orig/weight_mask keys
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{paths.final} does not fit the {cfg.model} model of its config "
                              f"({str(exc).splitlines()[0][:120]}); recreate the run") from exc
    return model.to(dev).eval(), cfg, data


def analysis_batches(data, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` training batches of a seeded epoch, kept in memory (both analyses
    iterate them many times and must see the same function each time)."""
    return list(itertools.islice(data.train.epoch(seed), n))


def _fresh(meta_path: Path, wanted: dict[str, Any]) -> bool:
    """An existing result computed with the same settings (so a rerun skips it)."""
    if not meta_path.is_file():
        return False
    try:
        saved = read_json(meta_path)
    except CheckpointError:
        return False
    return all(saved.get(k) == v for k, v in wanted.items())


def hessian_of_run(run_dir: str | Path, st: AnalysisSettings, *, device: str = "cpu", data_dir: str = "",
                   overwrite: bool = False, loader=None) -> dict[str, Any]:
    """Top-k Hessian eigenvalues of the final model -> ``analysis/eigenvalues.json`` (returned).
    Skipped (the saved result returned) when it exists with the same settings. ``loader`` returns
    ``load_final_model``'s tuple, so one loaded model can serve both analyses."""
    from ..analysis import top_eigenvalues

    paths = RunPaths(run_dir)
    wanted = {"k": st.k, "iters": st.iters, "tol": st.tol, "batches": st.batches, "seed": st.seed}
    if not overwrite and _fresh(paths.eigenvalues, wanted):
        return {**read_json(paths.eigenvalues), "reused": True}
    model, cfg, data = loader() if loader else load_final_model(run_dir, device, data_dir)
    batches = analysis_batches(data, st.batches, st.seed)
    t0 = time.time()
    values = top_eigenvalues(model, F.cross_entropy, batches, st.k, iters=st.iters, tol=st.tol,
                             generator=torch.Generator().manual_seed(st.seed))
    result = {**wanted, "eigenvalues": values, "samples": sum(int(y.shape[0]) for _, y in batches),
              "split": "train", "loss": "mean cross-entropy", "restricted_to": "unpruned prunable weights",
              "percent_pruned": sparsity(current_masks(model)), "method": cfg.method, "run_name": paths.root.name,
              "seconds": time.time() - t0}
    write_json(paths.eigenvalues, result)
    return result


def landscape_of_run(run_dir: str | Path, st: AnalysisSettings, *, device: str = "cpu", data_dir: str = "",
                     overwrite: bool = False, loader=None, label: str = "") -> dict[str, Any]:
    """Loss surface of the final model -> ``analysis/landscape.{npz,png,json}``; returns the meta."""
    from ..analysis import loss_surface, save_surface

    paths = RunPaths(run_dir)
    wanted = {"grid": st.grid, "span": st.span, "batches": st.batches, "seed": st.seed}
    if not overwrite and _fresh(paths.landscape_meta, wanted) and paths.landscape_png.is_file():
        return {**read_json(paths.landscape_meta), "reused": True}
    model, cfg, data = loader() if loader else load_final_model(run_dir, device, data_dir)
    batches = analysis_batches(data, st.batches, st.seed)
    t0 = time.time()
    surface = loss_surface(model, F.cross_entropy, batches, steps=st.grid, span=st.span, seed=st.seed)
    pct = sparsity(current_masks(model))
    title = f"Loss landscape: {label or paths.root.name} ({cfg.model} on {cfg.dataset}, {pct:.1f}% pruned)"
    save_surface(surface, paths.landscape_npz, paths.landscape_png, title)
    loss = surface["loss"]
    centre = float(loss[st.grid // 2, st.grid // 2]) if st.grid % 2 else float("nan")
    meta = {**wanted, "loss_at_minimum": centre, "loss_min": float(loss.min()), "loss_max": float(loss.max()),
            "samples": sum(int(y.shape[0]) for _, y in batches), "percent_pruned": pct, "method": cfg.method,
            "run_name": paths.root.name, "seconds": time.time() - t0, "settings": asdict(st)}
    write_json(paths.landscape_meta, meta)
    return meta
