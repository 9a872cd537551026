"""The sections of the HTML report; each takes run rows and returns an HTML fragment.

Figures are drawn with the analysis package's plot functions into a temporary folder ``figs`` and
embedded; a section whose data is missing says which command produces it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable

from ..config import Config
from ..presets import PAPER_TABLE2
from ..results.runs import run_masks
from . import html as h

__all__ = ["runs_section", "phase_section", "overlap_section", "per_layer_section", "flatness_section",
           "landscape_section", "config_section", "MAX_ALL_PAIRS"]

MAX_ALL_PAIRS = 5  # up to this many runs of one model, the overlaps show every pair


def _note(text: str) -> str:
    return f'<p class="note">{h.esc(text)}</p>'


def runs_section(rows: list[dict]) -> str:
    header = ["run", "method", "model", "dataset", "seed", "% pruned (prunable weights)", "% pruned (all params)",
              "test accuracy (%)", "best val accuracy (%)", "nonzero params", "total params", "MACs (sparse)",
              "MACs (dense)", "top eigenvalue"]
    body = [[r["label"], r["curve"], r["model"], r["dataset"], r["seed"], h.fmt(r.get("percent_pruned")),
             h.fmt(r.get("percent_pruned_of_all_params")), h.fmt(r.get("test_accuracy")),
             h.fmt(r.get("best_val_accuracy")), h.fmt(r.get("params_nonzero")), h.fmt(r.get("params_total")),
             h.fmt(r.get("macs_sparse")), h.fmt(r.get("macs_dense")),
             h.fmt(max(r["eigenvalues"]), 4) if r.get("eigenvalues") else "-"] for r in rows]
    # One model and data set (the usual case) is named in the title: drop the two constant columns
    # so the table fits the page.
    if len({(r["model"], r["dataset"]) for r in rows}) == 1:
        header = header[:2] + header[4:]
        body = [b[:2] + b[4:] for b in body]
    out = h.table(header, body, left=2)
    out += ("<p class=\"meta\">Unstructured masks zero weights but do not speed up dense kernels: MACs (sparse) "
            "counts the multiply-adds a sparse kernel would need, not measured time.</p>")
    for model, dataset in sorted({(r["model"], r["dataset"]) for r in rows}):
        from ..presets import table3_key

        ref = PAPER_TABLE2.get(table3_key(model, dataset))
        if ref:
            out += (f"<p>The paper's Table 2 for {h.esc(model)} on {h.esc(dataset)} (its full protocol; for "
                    "reference): " + h.table(["method", "% pruned", "test accuracy (%)"],
                                             [[m, h.fmt(p), h.fmt(a)] for m, (p, a) in ref.items()]) + "</p>")
    return out


def phase_section(rows: list[dict], sweep: str | None, sweep_rows: list[dict] | None, figs: Path
                  ) -> tuple[str, dict | None]:
    """The sweep's phase-shift curve and transition widths (or the given runs alone); returns the
    HTML and the widths per curve (None without a sweep)."""
    from ..analysis import plot_phase
    from ..paths import SweepPaths
    from ..results.sweep_files import WIDTH_DEFINITION, phase_curves, phase_widths

    if sweep_rows is None:
        out = _note("No sweep given: this plot shows only the runs of this report. For the phase-shift curve "
                    "run `causal-prune sweep ...` and pass --sweep SWEEP_DIR.")
        plot_phase(phase_curves([{**r, "main": True} for r in rows]), figs / "runs_phase.png",
                   title="Test accuracy vs percent pruned of the runs in this report")
        return out + h.img_file(figs / "runs_phase.png", "accuracy against percent pruned"), None
    widths = phase_widths(phase_curves(sweep_rows))["curves"]
    sp = SweepPaths(sweep)
    png = sp.phase_png
    if not png.is_file():
        plot_phase(phase_curves(sweep_rows), figs / "phase.png", title="Phase shift")
        png = figs / "phase.png"
    out = h.img_file(png, "phase-shift curve", "Test accuracy against percent pruned, median over seeds (line) "
                     "with the min-max band across seeds; dots are single runs.")
    out += h.table(["curve", "transition width (pp)", "single seeds (pp)", "runs", "% pruned range", "best accuracy (%)"],
                   [[c, h.fmt(w["width_pp"], 1) if w["width_pp"] is not None else "no drop",
                     ", ".join("-" if v is None else f"{v:.1f}" for v in w["per_seed"].values()), w["runs"],
                     f"{w['percent_pruned_range'][0]:.1f}-{w['percent_pruned_range'][1]:.1f}",
                     h.fmt(w["best_accuracy"])] for c, w in widths.items()])
    out += f'<p class="meta">{h.esc(WIDTH_DEFINITION)}.</p>'
    failed = [r for r in sweep_rows if r.get("status") != "ok"]
    if failed:
        out += _note(f"{len(failed)} run(s) of the sweep failed and are left out: "
                     + "; ".join(f"{r['curve']} seed {r['seed']}: {r['status']}" for r in failed[:5]))
    if sp.hparams_png.is_file():
        out += "<h3>Hyperparameter study (paper Fig. 2)</h3>" + h.img_file(
            sp.hparams_png, "strip plots of accuracy and percent pruned per hyperparameter",
            "Each dot is a causal run; dashed lines mark the median per setting.")
    return out, widths


def _partners(causal: dict, group: list[dict]) -> list[dict]:
    """The runs to compare a causal run with: nearest global magnitude (same seed) and its
    layer-matched twins."""
    same_seed = [r for r in group if r["curve"] == "magnitude" and r["seed"] == causal["seed"]]
    out = [min(same_seed, key=lambda r: abs(r["percent_pruned"] - causal["percent_pruned"]))] if same_seed else []
    src = Path(causal["run_dir"]).name  # by folder name, as in analysis.findings (survives moves)
    out += [r for r in group if r.get("match_layers") and Path(r["match_layers"]).name == src]
    return out


def _spread(plan: list[tuple[dict, list]], n: int) -> list[tuple[dict, list]]:
    """Up to ``n`` entries of the first seed, spread from the least to the most pruned."""
    seed = min(c["seed"] for c, _ in plan)
    mine = sorted((e for e in plan if e[0]["seed"] == seed), key=lambda e: e[0]["percent_pruned"])
    if len(mine) <= n:
        return mine
    return [mine[round(i * (len(mine) - 1) / (n - 1))] for i in range(n)]


def _overlap_rows(pairs: list[tuple[dict, dict]], masks: dict[str, Any]) -> list[list[Any]]:
    from ..analysis import overlap_matrix

    rows = []
    for a, b in pairs:
        (both, only_a), (only_b, neither) = overlap_matrix(masks[a["label"]], masks[b["label"]]).tolist()
        pa, pb = both + only_a, both + only_b
        rows.append([a["label"], b["label"], h.fmt(pa), h.fmt(pb), h.fmt(both), h.fmt(pa * pb / 100),
                     h.fmt(only_a), h.fmt(only_b), h.fmt(neither)])
    return rows


def overlap_section(rows: list[dict], masks_csv: list[str], figs: Path, show: Callable[[object], str] = str) -> str:
    """Overlap heat maps and tables; ``show`` turns a file path into the form the page may print."""
    from ..analysis import plot_overlaps

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("masks_path"):
            groups.setdefault((r["model"], r["dataset"]), []).append(r)
    out = ""
    for (model, dataset), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        masks = {r["label"]: run_masks(r) for r in group}
        causal = [r for r in group if r["curve"] == "causal"]
        plan = [(c, _partners(c, group)) for c in causal]
        plan = [(c, p) for c, p in plan if p]
        out += f"<h3>{h.esc(model)} on {h.esc(dataset)}</h3>"
        if len(group) <= MAX_ALL_PAIRS or not plan:
            shown = group[:MAX_ALL_PAIRS]
            png = figs / f"overlap_{model}_{dataset}.png"
            plot_overlaps({r["label"]: masks[r["label"]] for r in shown}, png,
                          title=f"Overlap of pruned weights (% of all weights): {model} on {dataset}")
            out += h.img_file(png, "overlap heat maps")
            pairs = [(a, b) for i, a in enumerate(shown) for b in shown[i + 1:]]
        else:
            for i, (c, partners) in enumerate(_spread(plan, 3)):
                png = figs / f"overlap_{model}_{dataset}_{i}.png"
                plot_overlaps({r["label"]: masks[r["label"]] for r in [c, *partners]}, png,
                              title=f"{c['label']} against its baselines", rows=[c["label"]],
                              cols=[p["label"] for p in partners])
                out += h.img_file(png, f"overlap heat maps of {c['label']}")
            pairs = [(c, p) for c, partners in plan for p in partners]
        out += h.table(["run a", "run b", "% pruned a", "% pruned b", "pruned by both", "both if independent",
                        "only a", "only b", "neither"], _overlap_rows(pairs, masks), left=2)
    if out:
        out = ("<p>Percent of all prunable weights pruned by both runs, by only one, or by neither (paper Fig. 1b). "
               "'Both if independent' is the overlap two unrelated masks of these sparsities would have.</p>" + out)
    for path in masks_csv:
        out += _csv_block(Path(path), show)
    return out or _note("Fewer than two runs of one model with final masks: nothing to compare. "
                        "`causal-prune masks RUN...` writes overlaps.csv to pass with --masks-csv.")


def _csv_block(path: Path, show: Callable[[object], str]) -> str:
    from ..errors import CheckpointError

    if not path.is_file():
        raise CheckpointError(f"--masks-csv {path} does not exist; pass the overlaps.csv written by `causal-prune masks`")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    if not rows:
        return _note(f"{show(path)} is empty")
    body = [[h.fmt(float(v)) if _is_float(v) else v for v in r] for r in rows[1:]]
    out = f"<h3>{h.esc(show(path))}</h3>" + h.table(rows[0], body, left=2)
    png = path.with_suffix(".png")
    return out + (h.img_file(png, f"heat maps of {path.name}") if png.is_file() else "")


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def per_layer_section(rows: list[dict]) -> str:
    layers = sorted({k for r in rows for k in (r.get("per_layer") or {})}, key=lambda k: (k.split(".")[0], k))
    if not layers:
        return _note("No per-layer sparsity in these runs' summaries.")
    shown = rows[:12]
    body = [[k] + [h.fmt((r.get("per_layer") or {}).get(k), 1) for r in shown] for k in layers]
    out = h.table(["layer"] + [r["label"] for r in shown], body)
    if len(rows) > len(shown):
        out += _note(f"The first {len(shown)} of {len(rows)} runs are shown.")
    return "<p>Percent of each layer's weights pruned: global magnitude decides how much each layer loses; " \
           "the layer-matched baselines copy causal's column.</p>" + out


def flatness_section(rows: list[dict], figs: Path) -> str:
    from ..analysis.eigenplot import plot_eigenvalues

    have = [r for r in rows if r.get("eigenvalues")]
    if not have:
        return _note("No run has Hessian eigenvalues yet: run `causal-prune analyze RUN... --hessian`.")
    plot_eigenvalues({r["label"]: r["eigenvalues"] for r in have}, figs / "eigenvalues.png")
    k = max(len(r["eigenvalues"]) for r in have)
    body = [[r["label"], h.fmt(r["percent_pruned"]), h.fmt(r["test_accuracy"])]
            + [h.fmt(v, 4) for v in sorted(r["eigenvalues"], reverse=True)] for r in have]
    out = h.img_file(figs / "eigenvalues.png", "bar chart of top Hessian eigenvalues",
                     "Top eigenvalues of the training-loss Hessian restricted to the unpruned weights; "
                     "smaller = flatter minimum (paper Fig. 3).")
    out += h.table(["run", "% pruned", "test accuracy (%)"] + [f"lambda_{i + 1}" for i in range(k)], body)
    missing = [r["label"] for r in rows if not r.get("eigenvalues")]
    return out + (_note("Not analysed yet: " + ", ".join(missing)) if missing else "")


def landscape_section(rows: list[dict]) -> str:
    have = [r for r in rows if r.get("landscape_png")]
    if not have:
        return _note("No run has a loss landscape yet: run `causal-prune analyze RUN... --landscape`.")
    return "".join(h.img_file(r["landscape_png"], f"loss landscape of {r['label']}",
                              f"{r['label']}: log(1 + loss) around the final weights along two filter-normalised "
                              "directions (pruned weights stay zero).") for r in have)


def config_section(rows: list[dict], show: Callable[[object], str] = str) -> str:
    """Each run's settings; run folders and path-valued settings (--out, --match-layers, ...) pass
    through ``show``, so that the page prints no absolute path."""
    defaults = Config().to_dict()
    out = "<p>Settings that differ from the defaults are in bold; paths are relative to this report's folder.</p>"
    for r in rows:
        cfg = r["config"]
        body = [[h.esc(k), f'<b class="nd">{h.esc(_shown(v, show))}</b>' if defaults.get(k, v) != v
                 else h.esc(_shown(v, show))] for k, v in sorted(cfg.items())]
        table = h.table(["setting", "value"], body, left=2, raw=True)
        out += h.details(f"{r['label']}: {r['run_name']}", f"<p>{h.esc(show(r['run_dir']))}</p>{table}")
    return out


def _shown(value: Any, show: Callable[[object], str]) -> Any:
    return show(value) if isinstance(value, str) and os.path.isabs(value) else value


def study_section(rows: list[dict], figs: Path) -> str:
    """The multi-seed tables (results/study.py) when the runs hold causal runs with their baselines
    for two or more seeds; empty otherwise."""
    import math

    from ..results.study import OVERLAP_NOTE, overlap_summary, study_groups, write_study

    finished = [r for r in rows if r.get("finished", True)]
    if len({g["seed"] for g in study_groups(finished)}) < 2:
        return ""  # before the tables, which read every group's masks for the overlaps
    t = write_study(finished, figs / "study")  # the files the page links, and the tables it shows

    def pm(mean: float, ci: float, digits: int = 2) -> str:
        if not math.isfinite(mean):
            return "-"
        return h.fmt(mean, digits) + (f" ± {h.fmt(ci, digits)}" if math.isfinite(ci) else "")

    out = h.img_file(figs / "study" / "study.png", "accuracy at equal sparsity over seeds",
                     "Test accuracy against percent pruned: mean over seeds with 95% t intervals.")
    out += h.table(["L1_coeff", "method", "seeds", "% pruned", "test accuracy (%)"],
                   [[f"{r['l1_coeff']:g}", r["method"], r["seeds"], pm(r["pruned_mean"], r["pruned_ci95"], 1),
                     pm(r["accuracy_mean"], r["accuracy_ci95"])] for r in t["accuracy"]], left=2)
    out += "<h4>Paired differences, per L1_coeff (paired t test, scipy)</h4>"
    out += h.table(["L1_coeff", "method − baseline", "seeds", "difference (points)", "p"],
                   [[f"{r['l1_coeff']:g}", f"{r['method']} − {r['baseline']}", r["seeds"],
                     pm(r["diff_mean"], r["diff_ci95"]),
                     h.fmt(r["t_test_p"], 3)] for r in t["pairs"]], left=2)
    out += "<h4>Over every L1_coeff, one difference per seed</h4>"
    out += h.table(["baseline", "seeds", "mean difference", "95% t interval", "Wilcoxon p", "sign p", "verdict"],
                   [[r["baseline"], r["seeds"], h.fmt(r["diff_mean"]),
                     f"{h.fmt(r['diff_ci95_low'])} to {h.fmt(r['diff_ci95_high'])}", h.fmt(r["signed_rank_p"], 3),
                     h.fmt(r["sign_p"], 3), r["verdict"]] for r in t["overall"]], left=1)
    out += "<h4>10%→90% transition width per seed (points of sparsity)</h4>"
    out += h.table(["curve", "per seed (D = the drop it is measured on)", "mean ± 95%"],
                   [[r["curve"], ", ".join(f"s{s}: {'no drop' if v is None else h.fmt(v, 1)} (D {h.fmt(r['drop'][s], 1)})"
                                           for s, v in r["per_seed"].items()), pm(r["mean"], r["ci95"], 1)]
                    for r in t["widths"]], left=2)
    if t["sharpness"]:
        out += "<h4>Top Hessian eigenvalue λ1, causal ÷ baseline (above 1: causal's minimum is sharper)</h4>"
        out += h.table(["L1_coeff", "baseline", "per seed", "geometric mean", "95% t interval"],
                       [[f"{r['l1_coeff']:g}", r["baseline"],
                         ", ".join(f"s{s}: {h.fmt(v)}" for s, v in sorted(r["per_seed"].items())),
                         h.fmt(r["geo_mean"]), f"{h.fmt(r['ci95_low'])} to {h.fmt(r['ci95_high'])}"]
                        for r in t["sharpness"]], left=3)
    if t["overlaps"]:
        out += "<h4>Within each layer: of the weights causal prunes, the percent a baseline prunes too</h4>"
        out += f"<p>{OVERLAP_NOTE.replace('*', '')}</p>"
        out += h.table(["L1_coeff", "baseline", "layer", "causal % pruned", "shared", "chance"],
                       [[f"{r['l1_coeff']:g}", r["baseline"], r["layer"], pm(*r["causal_pruned"], 1),
                         pm(*r["shared"], 1), pm(*r["chance"], 1)] for r in overlap_summary(t["overlaps"])], left=3)
    return out
