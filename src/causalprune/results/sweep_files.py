"""The files of a sweep folder: sweep.csv, sweep.json, phase.png, phase_width.json, hparams.png.

Each figure is drawn from the rows written next to it (style rule 9: the raw data beside every
figure), so ``causal-prune report --sweep DIR`` and a reader's own notebook see the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import Config
from ..paths import SweepPaths
from ..storage import write_json, write_text
from .runs import CURVES

__all__ = ["CSV_COLUMNS", "WIDTH_DEFINITION", "phase_curves", "phase_widths", "varied_params",
           "write_sweep_outputs", "read_sweep_rows"]

CSV_COLUMNS = ("curve", "method", "seed", "l1_coeff", "target_sparsity", "n_iter", "n_prune", "percent_pruned",
               "test_accuracy", "status", "main", "match_layers", "run_dir")
WIDTH_DEFINITION = ("transition width: on the median-over-seeds curve of test accuracy vs percent pruned, the "
                    "distance in percentage points of pruning between where accuracy first falls below "
                    "A0 - 0.1 D and where it first falls below A0 - 0.9 D (A0 = highest accuracy, D = A0 - "
                    "accuracy at the most-pruned point); smaller = sharper; null = no drop")


def phase_curves(rows: list[dict]) -> dict[str, list[tuple[float, float, int]]]:
    """curve -> [(percent pruned, test accuracy, seed)] of the finished main-protocol runs."""
    curves: dict[str, list[tuple[float, float, int]]] = {}
    for name in CURVES:
        pts = [(float(r["percent_pruned"]), float(r["test_accuracy"]), int(r["seed"])) for r in rows
               if r["curve"] == name and r.get("main", True) and r.get("status", "ok") == "ok"]
        if pts:
            curves[name] = pts
    return curves


def _nan_to_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def phase_widths(curves: dict[str, list[tuple[float, float, int]]]) -> dict[str, Any]:
    """Transition width of every curve, the same way for all (see WIDTH_DEFINITION), on the
    median-over-seeds curve and for each seed alone (its spread shows how firm the median is)."""
    from ..analysis import median_curve, transition_width

    out: dict[str, Any] = {"definition": WIDTH_DEFINITION, "curves": {}}
    for name, pts in curves.items():
        med = median_curve(pts)
        per_seed = {}
        for seed in sorted({s for _, _, s in pts}):
            xs = [x for x, _, s in pts if s == seed]
            ys = [y for _, y, s in pts if s == seed]
            per_seed[str(seed)] = _nan_to_none(transition_width(xs, ys))
        out["curves"][name] = {
            "width_pp": _nan_to_none(transition_width(med["x"], med["median"])),
            "per_seed": per_seed,
            "runs": len(pts),
            "percent_pruned_range": [float(min(x for x, _, _ in pts)), float(max(x for x, _, _ in pts))],
            "best_accuracy": float(max(med["median"])),
            "accuracy_at_most_pruned": float(med["median"][-1]),
        }
    return out


def varied_params(rows: list[dict]) -> tuple[str, ...]:
    """Which of N_iter, N_prune, L1_coeff take more than one value among the causal runs."""
    causal = [r for r in rows if r["curve"] == "causal"]
    return tuple(p for p in ("n_iter", "n_prune", "l1_coeff") if len({r[p] for r in causal}) > 1)


def write_sweep_outputs(rows: list[dict], out: Path, base: Config, spec) -> None:
    """Write every file of the sweep folder ``out`` from ``rows``."""
    from ..analysis import plot_phase, strip_plots

    paths = SweepPaths(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS} for r in rows)
    write_text(paths.csv, buf.getvalue())
    write_json(paths.json, {"spec": asdict(spec), "base_config": base.to_dict(),
                            "runs": [r["run_dir"] for r in rows]})
    curves = phase_curves(rows)
    main = [r for r in rows if r.get("main")]
    protocol = f"N_iter={main[0]['n_iter']}, N_prune={main[0]['n_prune']}" if main else ""
    plot_phase(curves, paths.phase_png,
               title=f"Phase shift: {base.model} on {base.dataset} ({protocol}, {len(spec.seeds)} seed(s))")
    write_json(paths.phase_width, phase_widths(curves))
    params = varied_params(rows)
    ok = [r for r in rows if r["curve"] == "causal" and r["status"] == "ok"]
    if params and ok:
        strip_plots(ok, paths.hparams_png, params=params)


def read_sweep_rows(folder: str | Path) -> list[dict]:
    """sweep.csv back into typed rows (numbers as numbers, blanks as None)."""
    from ..errors import CheckpointError

    path = SweepPaths(folder).csv
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a sweep folder (no sweep.csv); pass the sweep-... folder "
                              "that `causal-prune sweep` printed")
    rows = []
    for raw in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        row: dict[str, Any] = {}
        for k, v in raw.items():
            if v == "":
                row[k] = None
            elif k in ("seed", "n_iter", "n_prune"):
                row[k] = int(v)
            elif k in ("l1_coeff", "target_sparsity", "percent_pruned", "test_accuracy"):
                row[k] = float(v)
            elif k == "main":
                row[k] = v == "True"
            else:
                row[k] = v
        # Run folders are siblings of the sweep folder: if the whole --out folder moved (or the
        # sweep ran from another working directory), find them there.
        if row.get("run_dir") and not Path(row["run_dir"]).is_dir():
            sibling = Path(folder).parent / Path(row["run_dir"]).name
            if sibling.is_dir():
                row["run_dir"] = str(sibling)
        rows.append(row)
    return rows
