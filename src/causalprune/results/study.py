"""A multi-seed study of causal pruning against its baselines at equal sparsity (``causal-prune study``).

Input: finished run folders of one protocol, as ``sweep --baselines ...,causal-budget,unpruned``
makes them. Each causal run (one seed, one L1_coeff) is a *group* with the runs made from it:

* ``magnitude``: global magnitude, same seed, target sparsity = that causal run's (sweep.py);
* ``magnitude (layer-matched)``, ``random (layer-matched)``: ``--match-layers`` that causal run;
* ``causal-budget``: same seed and L1_coeff;
* ``magnitude (budget sparsity)``: global magnitude at exactly that causal-budget run's sparsity
  (causal-budget drifts from causal's sparsity over its iterations; this is its equal-sparsity pair);
* ``none``: the seed's unpruned run.

Per L1_coeff and method: test accuracy and percent pruned as mean ± the half-width of a 95 % t
interval over seeds. Per L1_coeff and baseline: the paired difference causal − baseline per seed,
its t interval and a paired t test (scipy). Over all L1_coeff values: the seed-level test of
analysis/stats.py (each seed one difference, the mean over its pairs; Wilcoxon and sign tests).
Also the 10 %→90 % transition width of each curve per seed, and the top Hessian eigenvalues of
the runs that have them (``causal-prune analyze --hessian``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import atomic_path, write_text

__all__ = ["BUDGET_MAGNITUDE", "OVERLAP_NOTE", "PAIRS", "STUDY_METHODS", "VS_CAUSAL", "overlap_summary",
           "study_groups", "study_overlaps", "study_tables", "write_study"]

STUDY_METHODS = ("causal", "magnitude", "magnitude (layer-matched)", "random (layer-matched)", "causal-budget",
                 "magnitude (budget sparsity)", "none")
BUDGET_MAGNITUDE = "magnitude (budget sparsity)"
# What causal is set against (test accuracy, λ1 ratios, overlaps); the budget-sparsity run pairs with
# causal-budget only, at another sparsity than causal's.
VS_CAUSAL = tuple(m for m in STUDY_METHODS[1:-1] if m != BUDGET_MAGNITUDE)
_PROTOCOL = ("model", "dataset", "n_pre", "n_iter", "n_prune", "n_post")
# Paired differences first − second. Causal against each baseline; then the two that split causal's
# recipe: its per-layer counts with magnitude's choice against global magnitude (does the allocation
# help?), and against random's choice at the same counts (does the choice within a layer matter?).
PAIRS = tuple(("causal", m) for m in (*VS_CAUSAL, "none")) + (
    ("magnitude (layer-matched)", "magnitude"), ("magnitude (layer-matched)", "random (layer-matched)"),
    ("causal-budget", BUDGET_MAGNITUDE))


def _ok(r: dict) -> bool:
    return r.get("test_accuracy") is not None and r.get("finished", True)


def _same_run(a: str, b: str) -> bool:
    # By folder name: run names carry a digest of their settings, and a published copy keeps only
    # the name of the run it matched (layers.publish), so this holds before and after publishing.
    return bool(a) and bool(b) and Path(a).name == Path(b).name


def study_groups(rows: list[dict]) -> list[dict]:
    """One group per finished causal run: its seed, L1_coeff and the run of each method (or None)."""
    from ..sweep import exact_target  # the target the sweep gave each global-magnitude run

    rows = [r for r in rows if _ok(r)]
    groups = []
    for c in sorted((r for r in rows if r["curve"] == "causal"), key=lambda r: (r["l1_coeff"], r["seed"])):
        same = [r for r in rows if r["seed"] == c["seed"] and all(r.get(k) == c.get(k) for k in _PROTOCOL)]
        target = exact_target(c)
        pick = {
            "causal": c,
            "magnitude": next((r for r in same if r["curve"] == "magnitude"
                               and r.get("target_sparsity") == target), None),
            "causal-budget": next((r for r in same if r["curve"] == "causal-budget"
                                   and r.get("l1_coeff") == c["l1_coeff"]), None),
            "none": next((r for r in same if r["curve"] == "none"), None),
        }
        for curve in ("magnitude (layer-matched)", "random (layer-matched)"):
            pick[curve] = next((r for r in same if r["curve"] == curve
                                and _same_run(r.get("match_layers") or "", c["run_dir"])), None)
        budget = pick["causal-budget"]
        budget_target = None if budget is None else exact_target(budget)
        pick[BUDGET_MAGNITUDE] = None if budget is None else next(
            (r for r in same if r["curve"] == "magnitude" and r.get("target_sparsity") == budget_target), None)
        groups.append({"seed": c["seed"], "l1_coeff": c["l1_coeff"], "runs": pick})
    return groups


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t interval (NaN half-width below 2 values)."""
    from ..analysis.stats import t_interval

    if not xs:
        return math.nan, math.nan
    lo, hi = t_interval(xs)
    return float(np.mean(xs)), (hi - lo) / 2 if math.isfinite(lo) else math.nan


def study_tables(rows: list[dict]) -> dict[str, Any]:
    """Every table of the study from the runs' rows (see the module docstring)."""
    from scipy import stats as st

    from ..analysis.phase import median_by_x
    from ..analysis.stats import paired_test
    from .sweep_files import phase_curves, phase_widths

    groups = study_groups(rows)
    l1s = sorted({g["l1_coeff"] for g in groups})
    accuracy, pairs = [], []
    for l1 in l1s:
        mine = [g for g in groups if g["l1_coeff"] == l1]
        for m in STUDY_METHODS:
            runs = [g["runs"][m] for g in mine if g["runs"][m] is not None]
            acc, acc_ci = _mean_ci([r["test_accuracy"] for r in runs])
            pp, pp_ci = _mean_ci([r["percent_pruned"] for r in runs])
            accuracy.append({"l1_coeff": l1, "method": m, "seeds": len(runs), "accuracy_mean": acc,
                             "accuracy_ci95": acc_ci, "pruned_mean": pp, "pruned_ci95": pp_ci,
                             "per_seed": {r["seed"]: r["test_accuracy"] for r in runs},
                             "per_seed_pruned": {r["seed"]: r["percent_pruned"] for r in runs}})
        for first, m in PAIRS:
            both = [(g["runs"][first]["test_accuracy"], g["runs"][m]["test_accuracy"]) for g in mine
                    if g["runs"][first] is not None and g["runs"][m] is not None]
            diffs = [a - b for a, b in both]
            mean, ci = _mean_ci(diffs)
            p = float(st.ttest_rel([a for a, _ in both], [b for _, b in both]).pvalue) if len(both) >= 2 \
                and np.std(diffs) > 0 else math.nan
            pairs.append({"l1_coeff": l1, "method": first, "baseline": m, "seeds": len(both), "diff_mean": mean,
                          "diff_ci95": ci, "t_test_p": p})
    overall = []
    for m in VS_CAUSAL:
        seeds, diffs = zip(*[(g["seed"], g["runs"]["causal"]["test_accuracy"] - g["runs"][m]["test_accuracy"])
                             for g in groups if g["runs"][m] is not None]) if any(
            g["runs"][m] is not None for g in groups) else ((), ())
        t = paired_test(list(seeds), list(diffs), margin=0.1)
        overall.append({"baseline": m, "seeds": t.n, "pairs": t.pairs, "diff_mean": t.mean,
                        "diff_ci95_low": t.interval[0], "diff_ci95_high": t.interval[1],
                        "signed_rank_p": t.signed_rank_p, "sign_p": t.sign.pvalue, "verdict": t.verdict})
    # The budget-sparsity runs are global magnitude runs too: kept off the curves, so that each
    # curve has one point per L1_coeff and the magnitude curve is the one paired with causal.
    used = [g["runs"][m] for g in groups for m in ("causal", *VS_CAUSAL) if g["runs"][m] is not None]
    # Every curve starts at its seed's unpruned model (0 % pruned): without that point a curve that
    # only spans the pruned runs measures its drop from its own least-pruned run, and scatter
    # between seeds at one sparsity would pass for a transition.
    dense = {g["seed"]: g["runs"]["none"] for g in groups if g["runs"]["none"] is not None}
    starts = [{**dense[s], "curve": c} for c, s in sorted({(r["curve"], r["seed"]) for r in used}) if s in dense]
    curves = phase_curves([{**r, "main": True, "status": "ok"} for r in used + starts])
    widths = phase_widths(curves)["curves"] if used else {}
    width_rows = []
    for curve, w in widths.items():
        per = [v for v in w["per_seed"].values() if v is not None]
        mean, ci = _mean_ci(per)
        # The drop D the width is measured on: a width over a drop of a few tenths is scatter, not a
        # transition, and the table says so by printing D beside it.
        drop = {}
        for seed in w["per_seed"]:
            _, ys = median_by_x([x for x, _, s in curves[curve] if str(s) == seed],
                                [y for _, y, s in curves[curve] if str(s) == seed])
            drop[seed] = float(ys.max() - ys[-1])
        width_rows.append({"curve": curve, "per_seed": w["per_seed"], "drop": drop, "mean": mean, "ci95": ci,
                           "median_curve": w["width_pp"]})
    eig = [{"seed": r["seed"], "method": m, "l1_coeff": g["l1_coeff"], "percent_pruned": r["percent_pruned"],
            "top3": list(r["eigenvalues"][:3])}
           for g in groups for m, r in g["runs"].items() if m != "none" and r is not None and r.get("eigenvalues")]
    # Flatness (paper Fig. 3): causal's top eigenvalue over each baseline's, per seed; the ratio of
    # two sharpnesses is compared on a log scale, so its summary is the geometric mean.
    ratios = []
    for l1 in l1s:
        for m in VS_CAUSAL:
            per = {g["seed"]: g["runs"]["causal"]["eigenvalues"][0] / g["runs"][m]["eigenvalues"][0]
                   for g in groups if g["l1_coeff"] == l1 and g["runs"][m] is not None
                   and g["runs"]["causal"].get("eigenvalues") and g["runs"][m].get("eigenvalues")}
            if per:
                logs = np.log(list(per.values()))
                mean, ci = _mean_ci(list(logs))
                ratios.append({"l1_coeff": l1, "baseline": m, "per_seed": per, "geo_mean": float(np.exp(mean)),
                               "ci95_low": float(np.exp(mean - ci)) if math.isfinite(ci) else math.nan,
                               "ci95_high": float(np.exp(mean + ci)) if math.isfinite(ci) else math.nan})
    seeds = sorted({g["seed"] for g in groups})
    per_seed = [{"l1_coeff": g["l1_coeff"], "seed": g["seed"], "percent_pruned": g["runs"]["causal"]["percent_pruned"],
                 "budget_percent_pruned": (g["runs"]["causal-budget"] or {}).get("percent_pruned", math.nan),
                 **{m: (r["test_accuracy"] if r is not None else math.nan) for m, r in g["runs"].items()}}
                for g in groups]
    return {"groups": len(groups), "seeds": seeds, "per_seed": per_seed, "l1_grid": l1s, "accuracy": accuracy, "pairs": pairs,
            "overall": overall, "widths": width_rows, "eigenvalues": eig, "sharpness": ratios,
            "overlaps": study_overlaps(groups)}


def study_overlaps(groups: list[dict]) -> list[dict]:
    """Which weights, within each layer: of the weights causal prunes, the percent each baseline prunes
    too (``shared``), beside what a baseline picking its weights at random in that layer would share
    (``chance`` = its own percent pruned there). Groups whose runs have no masks (published copies)
    are skipped."""
    from ..analysis import overlap_per_layer
    from .runs import run_masks

    out = []
    for g in groups:
        c = g["runs"]["causal"]
        if not c.get("masks_path"):
            continue
        cm = run_masks(c)
        for m in VS_CAUSAL:
            r = g["runs"][m]
            if r is None or not r.get("masks_path"):
                continue
            for layer, tab in overlap_per_layer(cm, run_masks(r)).items():
                (both, only_c), (only_b, _) = tab.tolist()
                pc, pb = both + only_c, both + only_b
                out.append({"l1_coeff": g["l1_coeff"], "seed": g["seed"], "baseline": m, "layer": layer,
                            "causal_pruned": pc, "baseline_pruned": pb,
                            "shared": 100.0 * both / pc if pc else math.nan, "chance": pb})
    return out


def overlap_summary(rows: list[dict]) -> list[dict]:
    """study_overlaps' rows over seeds: per L1_coeff, baseline and layer, (mean, 95 % t half-width) of
    causal's percent pruned, the shared percent and the chance level."""
    out = []
    for l1, i, layer in sorted({(r["l1_coeff"], STUDY_METHODS.index(r["baseline"]), r["layer"]) for r in rows}):
        mine = [r for r in rows if (r["l1_coeff"], r["baseline"], r["layer"]) == (l1, STUDY_METHODS[i], layer)]
        out.append({"l1_coeff": l1, "baseline": STUDY_METHODS[i], "layer": layer, "seeds": len(mine),
                    **{k: _mean_ci([r[k] for r in mine if math.isfinite(r[k])])
                       for k in ("causal_pruned", "shared", "chance")}})
    return out


OVERLAP_NOTE = ("Mean ± 95% t half-width over seeds. *chance* is what a baseline picking its weights in that "
                "layer at random would share: its own percent pruned there.")


def _overlap_markdown(rows: list[dict]) -> list[str]:
    out = ["", "### Within each layer: of the weights causal prunes, the percent a baseline prunes too", "",
           OVERLAP_NOTE, "", "| L1_coeff | baseline | layer | causal % pruned | shared | chance |",
           "|---|---|---|---:|---:|---:|"]
    for r in overlap_summary(rows):
        out.append(f"| {r['l1_coeff']:g} | {r['baseline']} | {r['layer']} | {_pm(*r['causal_pruned'], '.1f')} | "
                   f"{_pm(*r['shared'], '.1f')} | {_pm(*r['chance'], '.1f')} |")
    return out


def _pm(mean: float, ci: float, fmt: str = ".2f") -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:{fmt}}" + (f" ± {ci:{fmt}}" if math.isfinite(ci) else "")


def _p(p: float) -> str:
    return "—" if not math.isfinite(p) else f"{p:.3f}"


def study_markdown(t: dict[str, Any]) -> str:
    out = [f"{t['groups']} causal runs, seeds {', '.join(map(str, t['seeds']))}; mean ± half-width of the 95% "
           "t interval over seeds.", "", "### Test accuracy (%) and percent pruned, per L1_coeff", "",
           "| L1_coeff | method | seeds | % pruned | test accuracy |", "|---|---|---:|---:|---:|"]
    for r in t["accuracy"]:
        out.append(f"| {r['l1_coeff']:g} | {r['method']} | {r['seeds']} | {_pm(r['pruned_mean'], r['pruned_ci95'], '.1f')} "
                   f"| {_pm(r['accuracy_mean'], r['accuracy_ci95'])} |")
    out += ["", "### Test accuracy (%) per seed", "", "Every method at causal's sparsity, except causal-budget and "
            "magnitude (budget sparsity), at causal-budget's.", "", "| L1_coeff | seed | causal % pruned | "
            "causal-budget % pruned | " + " | ".join(STUDY_METHODS) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(STUDY_METHODS)]
    for r in t["per_seed"]:
        out.append(f"| {r['l1_coeff']:g} | {r['seed']} | {r['percent_pruned']:.2f} | "
                   f"{_pm(r['budget_percent_pruned'], math.nan)} | "
                   + " | ".join(_pm(r[m], math.nan) for m in STUDY_METHODS) + " |")
    out += ["", "### Paired differences (accuracy points), per L1_coeff", "",
            "| L1_coeff | method − baseline | seeds | difference | paired t test p |", "|---|---|---:|---:|---:|"]
    for r in t["pairs"]:
        out.append(f"| {r['l1_coeff']:g} | {r['method']} − {r['baseline']} | {r['seeds']} | "
                   f"{_pm(r['diff_mean'], r['diff_ci95'])} | {_p(r['t_test_p'])} |")
    out += ["", "### Over every L1_coeff: one difference per seed (the mean over its pairs)", "",
            "| baseline | seeds | pairs | mean difference | 95% t interval | Wilcoxon p | sign p | verdict |",
            "|---|---:|---:|---:|---|---:|---:|---|"]
    for r in t["overall"]:
        out.append(f"| {r['baseline']} | {r['seeds']} | {r['pairs']} | {_pm(r['diff_mean'], math.nan)} | "
                   f"{_pm(r['diff_ci95_low'], math.nan)} to {_pm(r['diff_ci95_high'], math.nan)} | "
                   f"{_p(r['signed_rank_p'])} | {_p(r['sign_p'])} | {r['verdict']} |")
    out += ["", "### 10%→90% transition width (points of sparsity), per seed", "",
            "Each curve runs from its seed's unpruned model through one point per L1_coeff; the width "
            "cannot resolve less than the spacing of those points. D is the accuracy drop (points) it is "
            "measured on: under a point or so it is scatter between runs, not a transition.", "",
            "| curve | per seed | mean ± 95% | on the median curve |", "|---|---|---:|---:|"]
    for r in t["widths"]:
        per = ", ".join(f"s{s}: {'no drop' if v is None else f'{v:.1f}'} (D {r['drop'][s]:.1f})"
                        for s, v in r["per_seed"].items())
        med = "no drop" if r["median_curve"] is None else f"{r['median_curve']:.1f}"
        out.append(f"| {r['curve']} | {per} | {_pm(r['mean'], r['ci95'], '.1f')} | {med} |")
    if t["eigenvalues"]:
        out += ["", "### Top-3 Hessian eigenvalues", "", "| seed | method | L1_coeff | % pruned | λ1, λ2, λ3 |",
                "|---:|---|---|---:|---|"]
        for r in sorted(t["eigenvalues"], key=lambda r: (r["l1_coeff"], r["seed"], r["method"])):
            out.append(f"| {r['seed']} | {r['method']} | {r['l1_coeff']:g} | {r['percent_pruned']:.1f} | "
                       + ", ".join(f"{v:.3g}" for v in r["top3"]) + " |")
    if t["sharpness"]:
        out += ["", "### Top eigenvalue λ1, causal ÷ baseline (above 1: causal's minimum is sharper)", "",
                "| L1_coeff | baseline | per seed | geometric mean | 95% t interval |", "|---|---|---|---:|---|"]
        for r in t["sharpness"]:
            per = ", ".join(f"s{s}: {v:.2f}" for s, v in sorted(r["per_seed"].items()))
            out.append(f"| {r['l1_coeff']:g} | {r['baseline']} | {per} | {r['geo_mean']:.2f} | "
                       f"{_pm(r['ci95_low'], math.nan)} to {_pm(r['ci95_high'], math.nan)} |")
    if t["overlaps"]:
        out += _overlap_markdown(t["overlaps"])
    return "\n".join(out) + "\n"


def write_study(rows: list[dict], out: str | Path) -> dict[str, Any]:
    """study.md, study.csv (accuracy table), study_pairs.csv, study.png and, where the runs have their
    masks, study_overlaps.csv in ``out``; returns the tables."""
    t = study_tables(rows)
    out = Path(out)
    write_text(out / "study.md", "# Multi-seed study\n\n" + study_markdown(t))
    tables = [("study.csv", t["accuracy"], {"per_seed", "per_seed_pruned"}), ("study_pairs.csv", t["pairs"], set())]
    if t["overlaps"]:  # needs the masks, which published copies do not carry
        tables.append(("study_overlaps.csv", t["overlaps"], set()))
    for name, table, skip in tables:
        buf = io.StringIO()
        cols = [k for k in (table[0] if table else {}) if k not in skip]
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(table)
        write_text(out / name, buf.getvalue())
    _plot(t, out / "study.png")
    return t


def _plot(t: dict[str, Any], png: Path) -> None:
    """Test accuracy against percent pruned: each method's mean over seeds with its 95 % intervals
    in both directions, one point per L1_coeff, each seed's run faint beside it (the unpruned
    reference as a band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(STUDY_METHODS):
        pts = [r for r in t["accuracy"] if r["method"] == m and r["seeds"]]
        if not pts:
            continue
        if m == "none":
            acc, ci = pts[0]["accuracy_mean"], pts[0]["accuracy_ci95"]
            ax.axhline(acc, color="grey", ls="--", lw=1, label="unpruned")
            if math.isfinite(ci):
                ax.axhspan(acc - ci, acc + ci, color="grey", alpha=0.15)
            continue
        xs, ys = [r["pruned_mean"] for r in pts], [r["accuracy_mean"] for r in pts]
        xerr = [0 if not math.isfinite(r["pruned_ci95"]) else r["pruned_ci95"] for r in pts]
        yerr = [0 if not math.isfinite(r["accuracy_ci95"]) else r["accuracy_ci95"] for r in pts]
        line = ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker="osD^vx"[i % 6], capsize=3, lw=1.2, label=m)
        # Each seed's own run, faint: with three seeds a t interval can reach past 100 %, the runs cannot.
        seeds = [(r["per_seed_pruned"][s], a) for r in pts for s, a in r["per_seed"].items()]
        ax.scatter([x for x, _ in seeds], [a for _, a in seeds], s=14, alpha=0.35, marker="osD^vx"[i % 6],
                   color=line[0].get_color(), linewidths=0)
    ax.set_xlabel("weights pruned (%), mean over seeds")
    ax.set_ylabel("test accuracy (%), mean ± 95% interval")
    # The axes span the runs themselves, not the intervals: a t interval over two or three seeds
    # can reach far below 0 % or past 100 % and would squeeze every run into a corner.
    runs = [(r["per_seed_pruned"][s], a) for r in t["accuracy"] if r["seeds"] and r["method"] != "none"
            for s, a in r["per_seed"].items()]
    if runs:
        xs_all, ys_all = [x for x, _ in runs], [y for _, y in runs]
        ax.set_xlim(max(0.0, min(xs_all) - 3), min(100.0, max(xs_all) + 1.5))
        ax.set_ylim(max(0.0, min(ys_all) - 3), min(100.0, max(ys_all) + 2))
    ax.set_title(f"Accuracy at equal sparsity over {len(t['seeds'])} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
