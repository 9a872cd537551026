"""Run folders -> table -> figures -> ONE self-contained HTML file.

The report reads only run folders (config.json, summary.json, masks, analysis/) and, if given, a
sweep folder (sweep.csv, phase.png, hparams.png). Figures are drawn into a temporary folder and
embedded as base64 PNGs; nothing in the page needs a network or JavaScript. The findings at the top
are computed from the same rows (:mod:`causalprune.analysis.findings`), whatever they say.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path
from typing import Any

from ..results.runs import CURVES, read_runs
from ..storage import write_text
from . import html as h
from .sections import (
    config_section,
    flatness_section,
    landscape_section,
    overlap_section,
    per_layer_section,
    phase_section,
    runs_section,
)

__all__ = ["build_report", "report_rows"]


def _order(r: dict) -> tuple:
    curve = r["curve"]
    return (CURVES.index(curve) if curve in CURVES else len(CURVES), r.get("seed") or 0, r.get("percent_pruned") or 0)


def report_rows(runs: list[str], sweep: str | None) -> tuple[list[dict], list[dict], list[dict] | None]:
    """(rows shown in the report, rows the findings use, sweep rows or None).

    Without RUN folders the sweep's finished runs are shown. The findings use the runs shown plus
    the sweep's finished main-protocol runs (the baselines were run under that protocol only).
    """
    from ..errors import ConfigError
    from ..results.sweep_files import read_sweep_rows

    sweep_rows = read_sweep_rows(sweep) if sweep else None
    swept = [r["run_dir"] for r in sweep_rows or [] if r.get("status") == "ok"]
    main = [r["run_dir"] for r in sweep_rows or [] if r.get("status") == "ok" and r.get("main")]
    if not runs and not swept:
        raise ConfigError("nothing to report: pass run folders and/or --sweep DIR with finished runs")
    shown = sorted(read_runs(runs or swept), key=_order)
    known = {Path(r["run_dir"]).resolve() for r in shown}
    extra = [d for d in main if Path(d).resolve() not in known]
    used = shown + (read_runs(extra) if extra else [])
    if sweep_rows is not None:
        not_main = {Path(r["run_dir"]).resolve() for r in sweep_rows if not r.get("main")}
        used = [r for r in used if Path(r["run_dir"]).resolve() not in not_main]
    return shown, used, sweep_rows


def _findings(used: list[dict], widths: dict | None, sweep_kind: tuple | None) -> str:
    """The three answers, per model and data set (runs of different models are never compared)."""
    from ..analysis.findings import eigen_findings, layer_matched_findings, phase_findings

    groups: dict[tuple, list[dict]] = {}
    for r in used:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    body = ""
    for kind, rows in sorted(groups.items()):
        parts = [("Is causal's transition sharper than magnitude's? (paper Test 1)",
                  phase_findings(widths if kind == sweep_kind else None)),
                 ("Are causal's top Hessian eigenvalues smaller? (paper Test 2)", eigen_findings(rows)),
                 ('"How much per layer" or "which weights"? (layer-matched baselines)', layer_matched_findings(rows))]
        tag = "h4" if len(groups) > 1 else "h3"
        body += f"<h3>{h.esc(kind[0])} on {h.esc(kind[1])}</h3>" if len(groups) > 1 else ""
        body += "".join(f"<{tag}>{h.esc(q)}</{tag}>" + "".join(f"<p>{h.esc(t)}</p>" for t in f["text"])
                        for q, f in parts)
    return (f'<div class="findings">{body}</div><p class="meta">Computed from {len(used)} finished run(s) when '
            "this report was written; ties are differences within 0.5 accuracy points or twice their standard "
            "error over the pairs.</p>")


def build_report(runs: list[str], out: str | Path, *, sweep: str | None = None, masks_csv: list[str] | None = None,
                 title: str | None = None, command: str = "") -> Path:
    """Write the report for the given run folders (and sweep folder) to ``out``; returns its path."""
    from .. import __version__

    shown, used, sweep_rows = report_rows(runs, sweep)
    kinds = sorted({f"{r['model']} on {r['dataset']}" for r in shown})
    title = title or f"causalprune report: {', '.join(kinds)}"
    with tempfile.TemporaryDirectory(prefix="causalprune-report-") as tmp:
        figs = Path(tmp)
        phase_body, widths = phase_section(shown, sweep, sweep_rows, figs)
        swept = {Path(r["run_dir"]).name for r in sweep_rows or []}
        sweep_kind = next(((r["model"], r["dataset"]) for r in used if Path(r["run_dir"]).name in swept), None)
        sections = [
            ("findings", "Findings", _findings(used, widths, sweep_kind)),
            ("runs", "Runs (Table 2 style)", runs_section(shown)),
            ("phase", "Phase shift", phase_body),
            ("overlaps", "Mask overlaps", overlap_section(shown, masks_csv or [], figs)),
            ("layers", "Per-layer sparsity", per_layer_section(shown)),
            ("flatness", "Hessian eigenvalues", flatness_section(shown, figs)),
            ("landscapes", "Loss landscapes", landscape_section(shown)),
            ("config", "Configurations", config_section(shown)),
        ]
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta = (f"{len(shown)} run(s){' and sweep ' + h.esc(sweep) if sweep else ''}; written {h.esc(stamp)} by "
            f"causalprune {h.esc(__version__)}" + (f"<br><code>{h.esc(command)}</code>" if command else ""))
    out = Path(out)
    write_text(out, h.page(title, meta, sections))
    return out


def describe(rows: list[dict[str, Any]]) -> str:
    """One line per run for the terminal."""
    return "\n".join(f"  {r['label']:<40} {r['percent_pruned']:6.2f}% pruned  {r['test_accuracy']:6.2f}% test"
                     for r in rows)
