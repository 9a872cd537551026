"""Run folders -> rows: the one place where analysis commands read finished runs.

A row is a flat dict built from a run folder's ``config.json`` and ``summary.json`` (ShrinkBench
style: analysis reads run folders, never the trainer), plus the paths of the files that later
stages need (final masks, analysis results). :func:`read_runs` also accepts a folder that holds
run folders (an ``--out`` folder) and expands it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from ..errors import CheckpointError
from ..paths import RunPaths
from ..storage import read_json

__all__ = ["read_runs", "read_run", "expand_run_dirs", "curve_of", "run_label", "run_masks", "finite", "CURVES",
           "summary_table"]

# The curves of the phase-shift comparison, in drawing order.
CURVES = ("causal", "causal-budget", "magnitude", "magnitude (layer-matched)", "random (layer-matched)", "random",
          "none")

# config.json keys copied into every row (the summary wins where both have a value).
_CONFIG_KEYS = ("method", "model", "dataset", "seed", "l1_coeff", "n_pre", "n_iter", "n_prune", "n_post",
                "target_sparsity", "mag_prune_frac", "match_layers", "granularity", "momentum")


def _is_run(path: Path) -> bool:
    return RunPaths(path).config.is_file()


def expand_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Each path as a run folder; a folder that is not one but holds run folders is replaced by
    them (sorted). Duplicates are dropped, order kept."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CheckpointError(f"{p} is not a folder; pass run folders written by `causal-prune run`")
        found = [p] if _is_run(p) else sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c))
        if not found:
            raise CheckpointError(f"{p} is not a run folder (no config.json) and holds none; "
                                  "pass folders written by `causal-prune run`")
        out.extend(f for f in found if f.resolve() not in {o.resolve() for o in out})
    return out


def curve_of(method: str, match_layers: str) -> str:
    """The phase-shift curve a run belongs to: global and layer-matched baselines differ."""
    if match_layers and method in ("magnitude", "random"):
        return f"{method} (layer-matched)"
    return method


def read_run(path: str | Path, *, require_finished: bool = True) -> dict[str, Any]:
    """One run folder as a flat row (see the module docstring)."""
    paths = RunPaths(path)
    if not paths.config.is_file():
        raise CheckpointError(f"{paths.root} is not a run folder (no config.json)")
    config = read_json(paths.config)
    summary = read_json(paths.summary) if paths.summary.is_file() else None
    if summary is None and require_finished:
        raise CheckpointError(f"{paths.root} has not finished (no summary.json); rerun its "
                              "`causal-prune run` command to complete it, or leave it out")
    row: dict[str, Any] = {k: config.get(k) for k in _CONFIG_KEYS}
    row.update({k: v for k, v in (summary or {}).items() if k != "iterations" and v is not None})
    row.update(run_dir=str(paths.root), run_name=paths.root.name, config=config, finished=summary is not None,
               curve=curve_of(str(row["method"]), str(config.get("match_layers") or "")),
               masks_path=str(paths.final_masks) if paths.final_masks.is_file() else "")
    row.update(_analysis_files(paths))
    return row


def _analysis_files(paths: RunPaths) -> dict[str, Any]:
    eig = read_json(paths.eigenvalues) if paths.eigenvalues.is_file() else None
    return {"eigenvalues": (eig or {}).get("eigenvalues"),
            "landscape_png": str(paths.landscape_png) if paths.landscape_png.is_file() else "",
            "landscape_npz": str(paths.landscape_npz) if paths.landscape_npz.is_file() else ""}


def read_runs(paths: Iterable[str | Path], *, require_finished: bool = True) -> list[dict[str, Any]]:
    """Rows of the given run folders (folders of run folders are expanded), with unique labels."""
    rows = [read_run(p, require_finished=require_finished) for p in expand_run_dirs(paths)]
    labels = [run_label(r) for r in rows]
    for r, label in zip(rows, labels):
        # Two runs can differ only in a setting the label leaves out: add the run-name hash.
        r["label"] = label if labels.count(label) == 1 else f"{label} [{r['run_name'][-8:]}]"
    return rows


def run_label(row: dict[str, Any]) -> str:
    """A short human name: the curve plus the setting that places it on that curve, and the seed."""
    curve, seed = row["curve"], row.get("seed")
    if curve in ("causal", "causal-budget"):
        detail = f" l1={row['l1_coeff']:.0e}"
    elif curve in ("magnitude", "random") and (row.get("target_sparsity") or -1) >= 0:
        detail = f" S={100 * row['target_sparsity']:.1f}%"
    elif curve in ("magnitude", "random"):
        detail = f" {100 * (row.get('mag_prune_frac') or 0):.1f}%/iter"
    elif row.get("match_layers"):
        detail = f" to {_matched_setting(row['match_layers'])}"
    else:
        detail = ""
    return f"{curve}{detail} s{seed}"


def _matched_setting(run_dir: str) -> str:
    """What a layer-matched run copies, e.g. ``l1=1e-12`` for a causal run."""
    cfg = RunPaths(run_dir).config
    try:
        l1 = read_json(cfg).get("l1_coeff") if cfg.is_file() else None
    except CheckpointError:
        l1 = None
    return f"l1={l1:.0e}" if isinstance(l1, float) else Path(run_dir).name


def run_masks(row: dict[str, Any]):
    """The final masks of a row's run (uint8, 1 = kept)."""
    from ..masks import read_masks

    if not row.get("masks_path"):
        raise CheckpointError(f"{row['run_dir']} has no masks/final.safetensors; rerun its `causal-prune run` "
                              "command to finish it")
    return read_masks(row["masks_path"])


def finite(x: Any) -> bool:
    """True for a real, finite number (summary fields can be missing or NaN)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if finite(x) else "—"


def _varied(rows: list[dict[str, Any]]) -> list[str]:
    """The hyperparameters whose values differ between the runs (what tells their lines apart)."""
    from ..config import Config

    hp = Config().hp_dict()
    keys = [k for k in hp if k not in ("method", "model", "dataset", "seed", "l1_coeff")]
    return [k for k in keys if len({str(r["config"].get(k, hp[k])) for r in rows}) > 1]


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per run with what its summary.json says (unfinished runs show dashes), and
    the settings that differ between the runs."""
    varied = _varied(rows)
    out = ["| run | method | model | data set | seed | L1_coeff | settings | % pruned | test acc. (%) "
           "| best val acc. (%) | wall (s) |", "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        l1 = _fmt(r.get("l1_coeff"), ".0e") if str(r.get("method")).startswith("causal") else "—"
        settings = ", ".join(f"{k}={r['config'].get(k)}" for k in varied) or "—"
        out.append(f"| {r['label']} | {r.get('method')} | {r.get('model')} | {r.get('dataset')} | {r.get('seed')} "
                   f"| {l1} | {settings} | {_fmt(r.get('percent_pruned'), '.2f')} "
                   f"| {_fmt(r.get('test_accuracy'), '.2f')} | {_fmt(r.get('best_val_accuracy'), '.2f')} "
                   f"| {_fmt(r.get('wall_seconds'), '.0f')} |")
    return "\n".join(out) + "\n"
