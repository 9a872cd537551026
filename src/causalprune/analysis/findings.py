"""What the numbers say: the report's conclusions, computed from run rows (never written by hand).

Three questions the paper raises and the report answers:

1. Is causal pruning's accuracy drop sharper than magnitude's (paper §1, Test 1)? Compared by the
   transition width of :func:`causalprune.analysis.transition_width`, the same way for both.
2. Are its top Hessian eigenvalues smaller, i.e. is its minimum flatter (Test 2, §4.2)?
3. Where does its advantage come from? Global magnitude decides both *how much* each layer loses
   and *which* weights; the layer-matched baselines fix the first to causal's per-layer sparsity,
   so ``acc(causal) - acc(layer-matched magnitude)`` is the part due to "which weights" and the
   rest of the gap to global magnitude is due to "how much per layer".

Rows are dicts with ``curve, seed, percent_pruned, test_accuracy, run_dir, match_layers`` (and
``eigenvalues`` where analysed), as :func:`causalprune.runs.read_runs` and sweep.csv give them.

The accuracy comparisons are tested (:mod:`causalprune.analysis.stats`, with scipy; ``PAIRING``
says what a pair is and why the test counts seeds, not pairs), and their verdicts follow the tests
only. The transition widths and the eigenvalues are compared descriptively, without a test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .stats import ALPHA, LEVEL, PairedTest, min_units, paired_test

__all__ = ["paired_gaps", "matched_choice", "describe_test", "too_few_seeds", "layer_matched_findings",
           "eigen_findings", "phase_findings", "MIN_TOL", "PAIRING"]

MIN_TOL = 0.5  # percentage points of accuracy: a difference whose whole interval lies within +-MIN_TOL is "level"
SPARSITY_SLACK = 0.5  # points of sparsity by which "equal sparsity" may differ at a curve's ends

PAIRING = ("A pair is a causal run and a baseline run of the same seed at the same sparsity, so both start from "
           "the same pretrained weights and see the same batches: for a layer-matched baseline, the run made from "
           "that causal run (--match-layers); for global magnitude, the same seed's magnitude curve at the causal "
           "run's percent pruned. The pairs of one seed (one per L1_coeff) share that pretraining and are not "
           "independent, so each seed counts once: its difference is the mean over its pairs. The verdicts follow "
           f"a two-sided Wilcoxon signed-rank test on these per-seed differences (p < {ALPHA:g}); the sign test "
           f"and a {LEVEL:.0%} t interval for the mean are shown beside it, and 'level' means the whole interval "
           f"lies within +-{MIN_TOL} points. Counts over single pairs are descriptive only.")


def _ok(r: dict) -> bool:
    acc, pp = r.get("test_accuracy"), r.get("percent_pruned")
    return (r.get("status") in (None, "ok") and isinstance(acc, (int, float)) and isinstance(pp, (int, float))
            and math.isfinite(acc) and math.isfinite(pp))


def _key(path: Any) -> str:
    # Run folder names are unique per configuration (a hash), and unlike full paths they survive
    # moving the --out folder, so a layer-matched run is paired with its causal run by name.
    return Path(str(path)).name if path else ""


def _gap(t: PairedTest) -> dict[str, Any]:
    return {"mean": t.mean, "n": t.n, "pairs": t.pairs, "verdict": t.verdict, "test": t}


def _twins(rows: list[dict], curve: str) -> dict[str, dict]:
    """causal run name -> the run of ``curve`` made from it with --match-layers."""
    return {_key(r.get("match_layers")): r for r in rows if r.get("curve") == curve and _ok(r)}


def paired_gaps(rows: list[dict], other: str) -> dict[str, Any]:
    """acc(causal) - acc(other) over the pairs of ``PAIRING`` (for a global curve, the same seed's
    runs interpolated at the causal run's percent pruned, inside their range only), tested per seed."""
    causal = [r for r in rows if r.get("curve") == "causal" and _ok(r)]
    seeds, diffs = [], []
    if "layer-matched" in other:
        by_source = _twins(rows, other)
        for c in causal:
            twin = by_source.get(_key(c["run_dir"]))
            if twin is not None:
                seeds.append(c.get("seed"))
                diffs.append(c["test_accuracy"] - twin["test_accuracy"])
    else:
        per_seed: dict[Any, list[tuple[float, float]]] = {}
        for r in rows:
            if r.get("curve") == other and _ok(r):
                per_seed.setdefault(r.get("seed"), []).append((r["percent_pruned"], r["test_accuracy"]))
        for c in causal:
            pts = sorted(per_seed.get(c.get("seed"), []))
            if not pts:
                continue
            xs, ys = [x for x, _ in pts], [y for _, y in pts]
            # Sparsity is an outcome, so a target copied from causal lands a hair off; within
            # SPARSITY_SLACK points of the curve's ends the end value stands in (np.interp clips).
            if xs[0] - SPARSITY_SLACK <= c["percent_pruned"] <= xs[-1] + SPARSITY_SLACK:
                seeds.append(c.get("seed"))
                diffs.append(c["test_accuracy"] - float(np.interp(c["percent_pruned"], xs, ys)))
    return _gap(paired_test(seeds, diffs, margin=MIN_TOL))


def matched_choice(rows: list[dict]) -> dict[str, Any]:
    """acc(layer-matched magnitude) - acc(layer-matched random), paired by the causal run both copy."""
    mat, rnd = _twins(rows, "magnitude (layer-matched)"), _twins(rows, "random (layer-matched)")
    seeds, diffs = [], []
    for c in rows:
        k = _key(c.get("run_dir"))
        if c.get("curve") == "causal" and _ok(c) and k in mat and k in rnd:
            seeds.append(c.get("seed"))
            diffs.append(mat[k]["test_accuracy"] - rnd[k]["test_accuracy"])
    return _gap(paired_test(seeds, diffs, margin=MIN_TOL))


def _pp(x: float) -> str:
    return f"{abs(x):.2f} points"


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def describe_test(t: PairedTest, ahead: str = "causal ahead") -> str:
    """The numbers behind a verdict, in one clause."""
    lo, hi = t.interval
    interval = (f"{LEVEL:.0%} t interval {lo:+.2f} to {hi:+.2f}" if math.isfinite(lo)
                else "no interval from a single seed")
    return (f"mean per-seed difference {t.mean:+.2f} points over {_n(t.n, 'seed')}, {interval}; {ahead} in "
            f"{t.sign.positive} of {_n(t.n, 'seed')}, sign test p = {t.sign.pvalue:.3g}, signed-rank test "
            f"p = {t.signed_rank_p:.3g}")


def too_few_seeds(n: int) -> str:
    """The sentence that says when no verdict can be significant, whatever the data ('' otherwise)."""
    need = min_units(ALPHA)
    return (f"With {_n(n, 'seed')}, no two-sided sign or signed-rank test can reach p < {ALPHA:g}, whatever the "
            f"differences; at least {need} seeds are needed." if 0 < n < need else "")


def _pairs(t: PairedTest, who: str = "causal") -> str:
    if t.pairs <= t.n:
        return ""
    return (f" Descriptively, {who} is ahead in {t.pairs_positive} and behind in {t.pairs_negative} of the "
            f"{t.pairs} single pairs; the pairs of one seed share its pretrained weights, so they are not "
            "tested as independent.")


def _gap_sentence(g: dict, name: str) -> str:
    if g["verdict"] == "none":
        return f"There is no {name} run to compare with causal at equal sparsity."
    t: PairedTest = g["test"]
    nums = describe_test(t)
    if g["verdict"] == "level":
        return (f"Causal and {name} are level: {nums}; the whole interval lies within +-{MIN_TOL} points."
                + _pairs(t))
    if g["verdict"] == "inconclusive":
        return f"Causal and {name} cannot be told apart with these runs: {nums}, not significant.{_pairs(t)}"
    word = "more" if g["verdict"] == "higher" else "less"
    return f"Causal reaches {_pp(g['mean'])} {word} test accuracy than {name}: {nums}.{_pairs(t)}"


def layer_matched_findings(rows: list[dict]) -> dict[str, Any]:
    """Gaps to global magnitude, layer-matched magnitude and random, and what they imply."""
    g = {c: paired_gaps(rows, c) for c in ("magnitude", "magnitude (layer-matched)", "random (layer-matched)")}
    glob, mat, rnd = g["magnitude"], g["magnitude (layer-matched)"], g["random (layer-matched)"]
    text = [_gap_sentence(glob, "global magnitude"), _gap_sentence(mat, "layer-matched magnitude"),
            _gap_sentence(rnd, "layer-matched random")]
    if mat["verdict"] == "none":
        text.append("Without layer-matched runs the report cannot separate how much each layer loses from "
                    "which weights are chosen; run `causal-prune sweep` (it adds them) or "
                    "`causal-prune run --method magnitude --match-layers CAUSAL_RUN`.")
    elif mat["verdict"] == "inconclusive":
        text.append("The layer-matched comparison is inconclusive with these runs, so it cannot yet say whether "
                    "causal's result comes from how much each layer loses or from which weights it picks.")
    elif mat["verdict"] == "level":
        share = " This is where its edge over global magnitude comes from." if glob["verdict"] == "higher" else ""
        text.append("Given causal's per-layer sparsities, magnitude pruning does as well: what matters is how "
                    f"much each layer loses, not which weights inside it are chosen.{share}")
    elif mat["verdict"] == "higher":
        part = ""
        if glob["verdict"] == "higher" and glob["mean"] > 0:
            alloc = glob["mean"] - mat["mean"]
            part = (f" Of the {_pp(glob['mean'])} gap to global magnitude, {alloc:+.2f} points come from the "
                    f"per-layer allocation and {mat['mean']:+.2f} from the choice of weights.")
        text.append("Causal picks better weights within each layer: with the same per-layer sparsities, "
                    f"magnitude still trails.{part}")
    else:
        text.append("Within each layer magnitude picks better weights than causal; any advantage of causal "
                    "comes from how much it prunes per layer.")
    choice = matched_choice(rows)
    if choice["verdict"] != "none":
        size = {"higher": "so which weights are pruned matters at these sparsities.",
                "lower": "so which weights are pruned matters, and magnitude's choice is worse than chance.",
                "level": "so which weights are pruned matters little at these sparsities.",
                "inconclusive": "which is not significant, so these runs cannot tell whether that choice "
                                "matters."}[choice["verdict"]]
        text.append(f"At the same per-layer sparsities, magnitude's choice of weights gives {choice['mean']:+.2f} "
                    f"points of accuracy over a random choice ({describe_test(choice['test'], 'magnitude ahead')}), "
                    f"{size}")
    g["magnitude vs random (layer-matched)"] = choice
    few = too_few_seeds(max(x["n"] for x in g.values()))
    if few and any(x["verdict"] == "inconclusive" for x in g.values()):
        text.append(few)
    return {"gaps": g, "text": text}


def _top(r: dict) -> float | None:
    ev = r.get("eigenvalues")
    return float(max(ev)) if ev else None


def _range(r: tuple[float, float]) -> str:
    return f"{r[0]:.1f}" if abs(r[1] - r[0]) < 0.05 else f"{r[0]:.1f}-{r[1]:.1f}"


def eigen_findings(rows: list[dict]) -> dict[str, Any]:
    """Median top eigenvalue per curve over the runs that have one, and the verdict for causal
    against global magnitude (falling back to layer-matched magnitude)."""
    per: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if _top(r) is not None and _ok(r):
            per.setdefault(r["curve"], []).append((_top(r), r["percent_pruned"]))
    med = {c: float(np.median([v for v, _ in pts])) for c, pts in per.items()}
    rng = {c: (min(p for _, p in pts), max(p for _, p in pts)) for c, pts in per.items()}
    other = next((c for c in ("magnitude", "magnitude (layer-matched)") if c in med), None)
    if "causal" not in med or other is None:
        missing = "causal" if "causal" not in med else "magnitude"
        return {"median_top": med, "verdict": "none", "text": [
            f"No {missing} run has Hessian eigenvalues yet; run `causal-prune analyze RUN... --hessian` "
            "on causal and magnitude runs to compare the flatness of their minima."]}
    c, m = med["causal"], med[other]
    verdict = "smaller" if c < m else "larger" if c > m else "equal"
    agree = {"smaller": "as the paper reports (a flatter minimum)",
             "larger": "the opposite of the paper's claim (a sharper minimum)", "equal": "no difference"}[verdict]
    text = [f"The median top Hessian eigenvalue is {c:.4g} for causal ({len(per['causal'])} run(s), "
            f"{_range(rng['causal'])}% pruned) and {m:.4g} for {other} "
            f"({len(per[other])} run(s), {_range(rng[other])}% pruned): causal's is "
            f"{verdict} (ratio {c / m if m else math.inf:.2f}), {agree}."]
    if abs(np.median([p for _, p in per["causal"]]) - np.median([p for _, p in per[other]])) > 5:
        text.append("The two sets of runs differ by more than 5 points in sparsity, which by itself changes "
                    "the curvature; compare runs of similar sparsity before drawing a conclusion.")
    return {"median_top": med, "verdict": verdict, "other": other, "text": text}


WIDTH_TIE = 1.0  # points of sparsity (or 10% of the wider width) below which widths are called equal


def _width_verdict(wc: float, wm: float, cc: dict, cm: dict) -> str:
    """sharper / wider / equal, calling a difference within WIDTH_TIE (or 10%), or one inside the
    overlap of the single-seed ranges, equal."""
    if abs(wc - wm) <= max(WIDTH_TIE, 0.1 * max(wc, wm)):
        return "equal"
    sc = [w for w in (cc.get("per_seed") or {}).values() if w is not None]
    sm = [w for w in (cm.get("per_seed") or {}).values() if w is not None]
    if len(sc) > 1 and len(sm) > 1 and min(sc) <= max(sm) and min(sm) <= max(sc):
        return "equal"
    return "sharper" if wc < wm else "wider"


def _spread(curve: dict[str, Any]) -> str:
    seeds = [w for w in (curve.get("per_seed") or {}).values() if w is not None]
    return f" (single seeds: {min(seeds):.1f}-{max(seeds):.1f})" if len(seeds) > 1 else ""


def phase_findings(widths: dict[str, Any] | None) -> dict[str, Any]:
    """Causal's transition width against global magnitude's (from phase_width.json's ``curves``)."""
    if not widths:
        return {"verdict": "none", "text": ["No sweep was given, so the sharpness of the transition is not "
                                            "measured; run `causal-prune sweep` and pass --sweep DIR."]}
    wc = (widths.get("causal") or {}).get("width_pp")
    wm = (widths.get("magnitude") or {}).get("width_pp")
    if wc is None or wm is None:
        which = " and ".join(n for n, w in (("causal", wc), ("magnitude", wm)) if w is None)
        return {"verdict": "none", "text": [
            f"The {which} curve shows no accuracy drop over the swept range (or is missing), so no transition "
            "width can be measured; extend the grid to larger L1_coeff / sparsity values."]}
    verdict = _width_verdict(wc, wm, widths["causal"], widths["magnitude"])
    words = {"sharper": "sharper than magnitude's, as the paper's phase-shift argument predicts",
             "wider": "more gradual than magnitude's, contrary to the paper's phase-shift argument",
             "equal": "about as sharp as magnitude's (the difference is within the noise)"}[verdict]
    text = [f"Causal loses 10% to 90% of its total accuracy drop over {wc:.1f} points of sparsity"
            f"{_spread(widths['causal'])}, global magnitude over {wm:.1f}{_spread(widths['magnitude'])}: "
            f"causal's transition is {words}."]
    few = [n for n in ("causal", "magnitude") if len(widths[n].get("per_seed") or {}) and widths[n]["runs"] <
           3 * len(widths[n]["per_seed"])]
    if few:
        text.append(f"The {' and '.join(few)} curve has fewer than 3 sparsity levels per seed, so its width mostly "
                    "reflects the grid spacing; sweep a finer --l1-grid for a firm answer.")
    return {"verdict": verdict, "causal": wc, "magnitude": wm, "text": text}
