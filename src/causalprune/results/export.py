"""Exporting a run: its masks, or a pruned ``state_dict`` with the masks made permanent.

* masks: ``{"<module>.weight": uint8 tensor, 1 = kept}``; ``causalprune.load_masks(model, path)``
  applies them to a fresh model (safetensors or .pt) and names any layer that does not fit.
* state_dict: plain ``<module>.weight`` tensors with zeros where pruned (``weight_orig *
  weight_mask``, no ``weight_orig``/``weight_mask`` keys), so ``model.load_state_dict`` of a
  fresh, unpruned model of the same configuration takes it as is.

Both are flat dicts of tensors: safetensors (with a few metadata strings) or ``torch.save``
(``.pt``, loadable with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..masks import Masks, read_masks, sparsity
from ..paths import RunPaths
from ..storage import load_checkpoint, load_tensors, read_json, save_checkpoint, save_tensors

__all__ = ["FORMATS", "WHAT", "permanent_state_dict", "export_run", "efficiency_lines"]

FORMATS = ("safetensors", "pt")
WHAT = ("masks", "state_dict")
_SUFFIX = {"safetensors": ".safetensors", "pt": ".pt"}


def permanent_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``prune.remove`` on a state_dict: every ``X_orig``/``X_mask`` pair becomes ``X = orig * mask``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            out[base] = (value * state[base + "_mask"].to(value.dtype)).contiguous()
        else:
            out[key] = value
    return out


def _run(run: str | Path) -> tuple[RunPaths, dict[str, Any]]:
    paths = RunPaths(run)
    if not paths.config.exists():
        raise ConfigError(f"{paths.root} is not a causal-prune run folder (no config.json); pass the folder "
                          "`causal-prune run` printed")
    return paths, read_json(paths.config)


def _sources(paths: RunPaths, iteration: int | None) -> tuple[Path, Path]:
    """(masks file, checkpoint) of the finished run, or of pruning iteration ``iteration``."""
    if iteration is None:
        masks, ck = paths.final_masks, paths.final
        hint = ("the run has not finished; rerun the same `causal-prune run` command to finish it, "
                "or export a finished pruning iteration with --iteration N")
    else:
        masks, ck = paths.masks(iteration), paths.pruned(iteration)
        hint = f"pruning iteration {iteration} of this run has not finished (or does not exist)"
    for f in (masks, ck):
        if not f.exists():
            raise CheckpointError(f"{f} is missing: {hint}")
    return masks, ck


def export_run(run: str | Path, *, fmt: str = "safetensors", what: str = "masks", out: str | Path | None = None,
               iteration: int | None = None) -> Path:
    """Write the masks or the pruned state_dict of a run folder; returns the file written."""
    if fmt not in FORMATS or what not in WHAT:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)} and --what one of {', '.join(WHAT)}")
    paths, cfg = _run(run)
    dest = Path(out) if out else paths.export(what, fmt, iteration)
    if dest.suffix != _SUFFIX[fmt]:
        raise ConfigError(f"--out {dest} must end with {_SUFFIX[fmt]} for --format {fmt} "
                          "(the loaders pick the reader by the suffix)")
    masks_file, ck_file = _sources(paths, iteration)
    masks = read_masks(masks_file)
    if what == "masks":
        tensors: dict[str, torch.Tensor] = dict(masks)
    else:
        tensors = permanent_state_dict(load_checkpoint(ck_file)["model"])
        _check_zeros(tensors, masks)
    meta = {"causalprune": what, "run_name": str(cfg.get("name") or paths.root.name), "model": str(cfg.get("model")),
            "dataset": str(cfg.get("dataset")), "percent_pruned": f"{sparsity(masks):.4f}"}
    if fmt == "safetensors":
        save_tensors(dest, tensors, metadata=meta)
    else:
        save_checkpoint(dest, {k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    back = load_tensors(dest)  # read it back the way users will
    if back.keys() != tensors.keys() or any(not torch.equal(back[k].cpu(), tensors[k].cpu()) for k in back):
        raise CheckpointError(f"{dest} did not read back identically; check the disk and export again")
    return dest


def _check_zeros(state: dict[str, torch.Tensor], masks: Masks) -> None:
    """Every pruned weight of the exported state_dict is exactly zero (the point of the export)."""
    for key, mask in masks.items():
        w = state.get(key)
        if w is None or w.shape != mask.shape:
            raise CheckpointError(f"the checkpoint has no weight {key} shaped like its mask; the run folder "
                                  "mixes files of different runs")
        if bool((w[mask == 0] != 0).any()):
            raise CheckpointError(f"{key} has nonzero pruned weights in the checkpoint; the run folder is damaged")


def efficiency_lines(run: str | Path, iteration: int | None = None) -> list[str]:
    """Human-readable efficiency figures of the run (summary.json), or of an iteration's masks."""
    paths = RunPaths(run)
    if iteration is None and paths.summary.exists():
        s = read_json(paths.summary)
        ratio = s["macs_dense"] / max(s["macs_sparse"], 1)
        return [f"parameters: {s['params_total']:,} in all, {s['params_nonzero']:,} unpruned "
                f"({s['percent_pruned_of_all_params']:.2f}% of all parameters pruned)",
                f"prunable weights: {s['prunable_total']:,}, {s['prunable_nonzero']:,} kept "
                f"({s['percent_pruned']:.2f}% pruned)",
                f"multiply-accumulates per input: {s['macs_dense']:,} dense, {s['macs_sparse']:,} on unpruned "
                f"weights ({ratio:.2f}x fewer)",
                "note: unstructured masks save no time or memory with dense kernels; the second MAC figure "
                "is what a kernel that skips zero weights could save"]
    masks = read_masks(paths.masks(iteration) if iteration is not None else paths.final_masks)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return [f"prunable weights: {total:,}, {kept:,} kept ({sparsity(masks):.2f}% pruned)"]
