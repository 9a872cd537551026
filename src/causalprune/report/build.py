"""Run folders -> table -> figures -> ONE self-contained HTML file.

The report reads only run folders (config.json, summary.json, masks, analysis/) and, if given, a
sweep folder (sweep.csv, phase.png, hparams.png). Figures are drawn into a temporary folder and
embedded as base64 PNGs; nothing in the page needs a network or JavaScript. The findings at the top
are computed from the same rows (:mod:`causalprune.analysis.findings`), whatever they say.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import tempfile
from pathlib import Path
from typing import Any

from ..results.runs import CURVES, read_runs
from ..storage import write_text
from . import html as h
from .relpaths import path_shower
from .sections import (
    config_section,
    flatness_section,
    landscape_section,
    overlap_section,
    per_layer_section,
    phase_section,
    runs_section,
    study_section,
)

__all__ = ["build_report", "report_rows", "describe", "findings_parts", "sweep_findings", "command_line"]


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


def findings_parts(used: list[dict], widths: dict | None, sweep_kind: tuple | None
                   ) -> list[tuple[tuple, list[tuple[str, list[str]]]]]:
    """The three answers as text, per model and data set (runs of different models are never
    compared): [((model, dataset), [(question, [sentence, ...]), ...]), ...]."""
    from ..analysis.findings import (
        eigen_findings,
        layer_matched_findings,
        phase_findings,
    )

    groups: dict[tuple, list[dict]] = {}
    for r in used:
        groups.setdefault((r.get("model"), r.get("dataset")), []).append(r)
    return [(kind, [("Is causal's transition sharper than magnitude's? (paper Test 1)",
                     phase_findings(widths if kind == sweep_kind else None)["text"]),
                    ("Are causal's top Hessian eigenvalues smaller? (paper Test 2)", eigen_findings(rows)["text"]),
                    ('"How much per layer" or "which weights"? (layer-matched baselines)',
                     layer_matched_findings(rows)["text"])])
            for kind, rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]


def _findings(used: list[dict], widths: dict | None, sweep_kind: tuple | None) -> str:
    from ..analysis.findings import PAIRING

    parts = findings_parts(used, widths, sweep_kind)
    body = ""
    for kind, answers in parts:
        tag = "h4" if len(parts) > 1 else "h3"
        body += f"<h3>{h.esc(kind[0])} on {h.esc(kind[1])}</h3>" if len(parts) > 1 else ""
        body += "".join(f"<{tag}>{h.esc(q)}</{tag}>" + "".join(f"<p>{h.esc(t)}</p>" for t in text)
                        for q, text in answers)
    return (f'<div class="findings">{body}</div><p class="meta">Computed from {len(used)} finished run(s) when '
            f"this report was written. {h.esc(PAIRING)} The transition widths and the eigenvalues are compared "
            "as measured, without a test.</p>")


def sweep_findings(sweep: str) -> str:
    """The findings of a sweep folder from its sweep.csv alone (no run folders needed), as plain
    text: the numbers a README quotes, recomputed by ``causal-prune report --sweep DIR --findings``."""
    from ..analysis.findings import PAIRING
    from ..results.sweep_files import phase_curves, phase_widths, read_sweep_rows

    rows = read_sweep_rows(sweep)
    used = [r for r in rows if r.get("status") == "ok" and r.get("main")]
    widths = phase_widths(phase_curves(rows))["curves"]
    # sweep.csv has no model column and one sweep is one model: a single group
    parts = findings_parts([{**r, "model": "", "dataset": ""} for r in used], widths, ("", ""))
    lines = [f"findings of {sweep} ({len(used)} finished main-protocol run(s) in sweep.csv):"]
    for _, answers in parts:
        for q, text in answers:
            lines += ["", q, *(f"  {t}" for t in text)]
    return "\n".join(lines + ["", PAIRING])


def command_line(runs: list[str], out: Path, sweep: str | None, masks_csv: list[str], title: str | None,
                 show) -> str:
    """The report command that rewrites this page when run in its folder (every path relative to it)."""
    parts = ["causal-prune", "report", *(show(r) for r in runs)]
    parts += ["--sweep", show(sweep)] if sweep else []
    parts += ["--masks-csv", *(show(c) for c in masks_csv)] if masks_csv else []
    parts += ["--title", title] if title else []
    return " ".join(shlex.quote(p) for p in [*parts, "--out", out.name])


def build_report(runs: list[str], out: str | Path, *, sweep: str | None = None, masks_csv: list[str] | None = None,
                 title: str | None = None) -> Path:
    """Write the report for the given run folders (and sweep folder) to ``out``; returns its path.
    Every path on the page is relative to the folder of ``out`` (:mod:`.relpaths`)."""
    from .. import __version__

    out = Path(out)
    shown, used, sweep_rows = report_rows(runs, sweep)
    show = path_shower(out, [r["run_dir"] for r in shown])
    kinds = sorted({f"{r['model']} on {r['dataset']}" for r in shown})
    given_title = title
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
            ("study", "Multi-seed study", study_section(shown, figs)),
            ("overlaps", "Mask overlaps", overlap_section(shown, masks_csv or [], figs, show)),
            ("layers", "Per-layer sparsity", per_layer_section(shown)),
            ("flatness", "Hessian eigenvalues", flatness_section(shown, figs)),
            ("landscapes", "Loss landscapes", landscape_section(shown)),
            ("config", "Configurations", config_section(shown, show)),
        ]
        sections = [sec for sec in sections if sec[0] != "study" or sec[2]]  # only with 2+ seeds of groups
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = command_line(list(runs), out, sweep, masks_csv or [], given_title, show)
    meta = (f"{len(shown)} run(s){' and sweep ' + h.esc(show(sweep)) if sweep else ''}; written {h.esc(stamp)} by "
            f"causalprune {h.esc(__version__)}; paths are relative to this report's folder, where this command "
            f"rewrites it:<br><code>{h.esc(command)}</code>")
    write_text(out, h.page(title, meta, sections))
    return out


def describe(rows: list[dict[str, Any]]) -> str:
    """One line per run for the terminal."""
    return "\n".join(f"  {r['label']:<40} {r['percent_pruned']:6.2f}% pruned  {r['test_accuracy']:6.2f}% test"
                     for r in rows)
