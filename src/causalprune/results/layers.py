"""Per-iteration, per-layer sparsity of a run: the small ``layer_sparsity.csv`` every run writes.

It is the run's pruning history in a few kilobytes (no masks needed), so it can be committed
beside ``summary.json`` as the source of a published per-layer table, and ``causal-prune runs``
rebuilds that table from it. Older run folders without the file fall back to their masks.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..paths import RunPaths
from ..storage import write_text

__all__ = ["LAYER_COLUMNS", "ARTIFACTS", "artifacts", "layer_rows", "write_layer_sparsity", "read_layer_sparsity",
           "layer_table", "publish"]

LAYER_COLUMNS = ("iteration", "layer", "weights", "kept", "percent_pruned")


def artifacts(paths: RunPaths) -> list[Path]:
    """The files of a run folder that carry its published figures: kilobytes, no checkpoints or masks.
    What the structure removes and what ``shrink`` made of it come along when a run has them."""
    return [paths.config, paths.summary, paths.metrics, paths.layer_sparsity, paths.structure, paths.shrunk_widths]


ARTIFACTS = tuple(p.name for p in artifacts(RunPaths("."))[:4])  # every finished run has these

# Settings that hold paths of the machine the run was made on.
_PATH_SETTINGS = ("out", "data_dir", "match_layers")


def layer_rows(masks_by_iteration: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (iteration, layer), plus an ``all`` row per iteration (share of every prunable weight)."""
    rows = []
    for it in sorted(masks_by_iteration):
        masks = masks_by_iteration[it]
        total = kept_total = 0
        for layer, m in masks.items():
            n, kept = int(m.numel()), int(m.sum())
            total, kept_total = total + n, kept_total + kept
            rows.append({"iteration": it, "layer": layer, "weights": n, "kept": kept,
                         "percent_pruned": 100.0 * (n - kept) / max(n, 1)})
        rows.append({"iteration": it, "layer": "all", "weights": total, "kept": kept_total,
                     "percent_pruned": 100.0 * (total - kept_total) / max(total, 1)})
    return rows


def _masks_by_iteration(paths: RunPaths, upto: int) -> dict[int, dict[str, Any]]:
    from ..masks import read_masks

    return {it: read_masks(paths.masks(it)) for it in range(1, upto + 1) if paths.masks(it).is_file()}


def write_layer_sparsity(paths: RunPaths, iteration: int, masks: dict[str, Any]) -> None:
    """Rewrite the run's layer_sparsity.csv with ``iteration``'s rows from ``masks``, after the rows
    already written for the iterations before it (idempotent: a resumed iteration replaces its own)."""
    rows = [r for r in read_layer_sparsity(paths.root) if r["iteration"] < iteration]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LAYER_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows + layer_rows({iteration: masks}):
        w.writerow({**r, "percent_pruned": f"{r['percent_pruned']:.6f}"})
    write_text(paths.layer_sparsity, buf.getvalue())


def read_layer_sparsity(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's layer_sparsity.csv, or rebuilt from its masks when the file is absent."""
    paths = RunPaths(run_dir)
    if paths.layer_sparsity.is_file():
        try:
            with open(paths.layer_sparsity, newline="", encoding="utf-8") as fh:
                return [{"iteration": int(r["iteration"]), "layer": r["layer"], "weights": int(r["weights"]),
                         "kept": int(r["kept"]), "percent_pruned": float(r["percent_pruned"])}
                        for r in csv.DictReader(fh)]
        except (KeyError, ValueError, csv.Error) as exc:
            raise CheckpointError(f"{paths.layer_sparsity} is not a layer-sparsity table ({exc}); delete it to "
                                  "rebuild it from the masks") from None
    n = sum(1 for _ in paths.masks_dir.glob("iter_*.safetensors")) if paths.masks_dir.is_dir() else 0
    return layer_rows(_masks_by_iteration(paths, n))


def layer_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per iteration, one column per layer (percent pruned), then all weights."""
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["layer"] != "all"))
    cols = layers + ["all"]
    by = {(r["iteration"], r["layer"]): r["percent_pruned"] for r in rows}
    iterations = sorted({r["iteration"] for r in rows})
    out = ["| iteration | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
    for it in iterations:
        out.append(f"| {it} | " + " | ".join(f"{by[(it, c)]:.2f}" if (it, c) in by else "—" for c in cols) + " |")
    return "\n".join(out) + "\n"


def publish(run_dir: str | Path, dest: str | Path) -> Path:
    """Copy a run's small artifacts (and ``analysis/eigenvalues.json`` where it has one) into ``dest/<run name>/``, with the paths in its settings reduced to
    the last folder name (a committed file must not carry a machine's absolute paths). Returns the copy."""
    import json

    from ..storage import read_json, write_json

    src = RunPaths(run_dir)
    if not src.config.is_file():
        raise CheckpointError(f"{src.root} is not a run folder (no config.json)")
    out = RunPaths(Path(dest) / src.root.name)
    config = read_json(src.config)
    for key in _PATH_SETTINGS:
        if config.get(key):
            config[key] = Path(str(config[key])).name
    write_json(out.config, config)
    # The Hessian eigenvalues are a few numbers that a study's tables quote, so they come along too.
    for file, to in [(f, out.root / f.name) for f in artifacts(src)[1:]] + [(src.eigenvalues, out.eigenvalues)]:
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            if file.suffix == ".json":  # no absolute path survives in any string value
                text = json.dumps(_relative(json.loads(text)), indent=2, sort_keys=True) + "\n"
            write_text(to, text)
    return out.root

def _relative(obj):
    if isinstance(obj, dict):
        return {k: _relative(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return Path(obj).name
    return obj
