"""`causal-prune study`: groups, intervals and paired tests from real run folders."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats as st

from causalprune.cli import main
from causalprune.results.runs import read_runs
from causalprune.results.study import (
    BUDGET_MAGNITUDE,
    PAIRS,
    STUDY_METHODS,
    VS_CAUSAL,
    study_groups,
    study_markdown,
    study_tables,
)
from causalprune.storage import read_json
from causalprune.sweep import BASELINES, SweepSpec, run_sweep


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    out = tmp_path_factory.mktemp("study")
    # allow_empty_layers: global magnitude at causal-budget's sparsity (91% of this small MLP) would
    # otherwise empty its last layer
    base = config_from_dict(preset_values("quick"), Config()).replace(out=str(out), device="cpu", n_post=1,
                                                                        max_steps_per_epoch=4, allow_empty_layers=True)
    run_sweep(base, SweepSpec(l1_grid=(5e-13, 1.5e-12), seeds=(0, 1), baselines=BASELINES))
    return out


def test_every_causal_run_is_grouped_with_the_runs_made_from_it(study_runs):
    rows = [r for r in read_runs([study_runs], require_finished=False) if r["finished"]]
    groups = study_groups(rows)
    assert len(groups) == 4 and all(all(g["runs"][m] is not None for m in STUDY_METHODS) for g in groups)
    for g in groups:
        c = g["runs"]["causal"]
        assert all(r["seed"] == g["seed"] for r in g["runs"].values())
        assert g["runs"]["magnitude"]["percent_pruned"] == pytest.approx(c["percent_pruned"], abs=0.01)
        assert g["runs"]["magnitude (layer-matched)"]["per_layer"] == c["per_layer"]
        assert g["runs"]["causal-budget"]["l1_coeff"] == c["l1_coeff"]
        # causal-budget's equal-sparsity pair: global magnitude at its own sparsity, not causal's
        b, bm = g["runs"]["causal-budget"], g["runs"][BUDGET_MAGNITUDE]
        assert bm["method"] == "magnitude" and not bm.get("match_layers")
        assert bm["percent_pruned"] == pytest.approx(b["percent_pruned"], abs=0.01)
        assert bm["run_dir"] != g["runs"]["magnitude"]["run_dir"]


def test_intervals_and_paired_tests_are_the_textbook_ones(study_runs, tmp_path, capsys):
    rows = [r for r in read_runs([study_runs], require_finished=False) if r["finished"]]
    t = study_tables(rows)
    groups = study_groups(rows)
    l1 = t["l1_grid"][0]
    mine = [g for g in groups if g["l1_coeff"] == l1]
    acc = [g["runs"]["causal"]["test_accuracy"] for g in mine]
    row = next(r for r in t["accuracy"] if r["l1_coeff"] == l1 and r["method"] == "causal")
    half = st.t.ppf(0.975, len(acc) - 1) * np.std(acc, ddof=1) / math.sqrt(len(acc))
    assert row["accuracy_mean"] == pytest.approx(np.mean(acc)) and row["accuracy_ci95"] == pytest.approx(half)
    mag = [g["runs"]["magnitude"]["test_accuracy"] for g in mine]
    lm = [g["runs"]["magnitude (layer-matched)"]["test_accuracy"] for g in mine]
    for a, b, first in ((acc, mag, "causal"), (lm, mag, "magnitude (layer-matched)")):
        pair = next(r for r in t["pairs"] if (r["l1_coeff"], r["method"], r["baseline"]) == (l1, first, "magnitude"))
        assert pair["diff_mean"] == pytest.approx(np.mean(np.subtract(a, b)))
        if np.std(np.subtract(a, b)) > 0:
            assert pair["t_test_p"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert len(t["pairs"]) == len(t["l1_grid"]) * len(PAIRS)
    assert {r["baseline"] for r in t["overall"]} == set(VS_CAUSAL) == set(STUDY_METHODS[1:-1]) - {BUDGET_MAGNITUDE}
    budget = [(g["runs"]["causal-budget"]["test_accuracy"], g["runs"][BUDGET_MAGNITUDE]["test_accuracy"]) for g in mine]
    pair = next(r for r in t["pairs"] if (r["l1_coeff"], r["method"], r["baseline"]) == (l1, "causal-budget",
                                                                                          BUDGET_MAGNITUDE))
    assert pair["diff_mean"] == pytest.approx(np.mean([a - b for a, b in budget]))
    assert not any(r["method"] == "causal" and r["baseline"] == BUDGET_MAGNITUDE for r in t["pairs"])
    assert {w["curve"] for w in t["widths"]} >= {"causal", "magnitude"}
    assert main(["study", str(study_runs), "--out", str(tmp_path / "s")]) == 0
    lines = list(csv.DictReader(open(tmp_path / "s" / "study.csv")))
    assert len(lines) == 2 * len(STUDY_METHODS)
    assert (tmp_path / "s" / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert "Paired differences" in capsys.readouterr().out


def test_per_seed_rows_and_widths_start_at_the_unpruned_model(study_runs):
    from causalprune.analysis import transition_width

    rows = [r for r in read_runs([study_runs], require_finished=False) if r["finished"]]
    t = study_tables(rows)
    groups = study_groups(rows)
    assert len(t["per_seed"]) == len(groups)
    for row, g in zip(t["per_seed"], groups):
        assert row["seed"] == g["seed"] and row["percent_pruned"] == g["runs"]["causal"]["percent_pruned"]
        assert all(row[m] == g["runs"][m]["test_accuracy"] for m in STUDY_METHODS)
    causal = next(w for w in t["widths"] if w["curve"] == "causal")
    for seed in (0, 1):
        mine = [g for g in groups if g["seed"] == seed]
        xs = [0.0] + [g["runs"]["causal"]["percent_pruned"] for g in mine]
        ys = [mine[0]["runs"]["none"]["test_accuracy"]] + [g["runs"]["causal"]["test_accuracy"] for g in mine]
        want = transition_width(xs, ys)
        got = causal["per_seed"][str(seed)]
        assert (got is None and math.isnan(want)) or got == pytest.approx(want)
        assert causal["drop"][str(seed)] == pytest.approx(max(ys) - ys[int(np.argmax(xs))])


def _hessians_at_the_first_l1(study_runs) -> list[dict]:
    """`study --hessian-at` the smallest L1_coeff: top-3 eigenvalues of causal, global and layer-matched
    magnitude (reused once computed)."""
    rows = [r for r in read_runs([study_runs], require_finished=False) if r["finished"]]
    first = [g for g in study_groups(rows) if g["l1_coeff"] == min(g["l1_coeff"] for g in study_groups(rows))]
    assert main(["study", str(study_runs), "--out", str(study_runs / "study"), "--hessian-at",
                 f"{first[0]['l1_coeff']!r}", "--device", "cpu"]) == 0
    return first


def test_published_runs_give_the_same_study_with_their_hessian_eigenvalues(study_runs, tmp_path):
    first = _hessians_at_the_first_l1(study_runs)
    t = study_tables([r for r in read_runs([study_runs], require_finished=False) if r["finished"]])
    assert len(t["eigenvalues"]) == 6 and all(len(e["top3"]) == 3 for e in t["eigenvalues"])  # 2 seeds x 3 methods
    assert {e["method"] for e in t["eigenvalues"]} == {"causal", "magnitude", "magnitude (layer-matched)"}
    ratio = next(r for r in t["sharpness"] if r["baseline"] == "magnitude")
    for g in first:
        lam = {m: read_json(f"{g['runs'][m]['run_dir']}/analysis/eigenvalues.json")["eigenvalues"][0]
               for m in ("causal", "magnitude")}
        assert ratio["per_seed"][g["seed"]] == pytest.approx(lam["causal"] / lam["magnitude"])
    assert ratio["geo_mean"] == pytest.approx(math.exp(np.mean(np.log(list(ratio["per_seed"].values())))))
    assert main(["runs", str(study_runs), "--publish", str(tmp_path / "pub")]) == 0
    published = study_tables([r for r in read_runs([tmp_path / "pub"], require_finished=False) if r["finished"]])
    assert published["overlaps"] == [] and t["overlaps"]  # published copies carry no masks
    assert {k: v for k, v in published.items() if k != "overlaps"} == {k: v for k, v in t.items() if k != "overlaps"}


def test_within_layer_overlaps_count_the_masks_by_hand(study_runs):
    from causalprune.results.runs import run_masks

    rows = [r for r in read_runs([study_runs], require_finished=False) if r["finished"]]
    t = study_tables(rows)
    g = study_groups(rows)[0]
    cm, bm = run_masks(g["runs"]["causal"]), run_masks(g["runs"]["random (layer-matched)"])
    mine = [r for r in t["overlaps"] if (r["l1_coeff"], r["seed"], r["baseline"]) ==
            (g["l1_coeff"], g["seed"], "random (layer-matched)")]
    assert {r["layer"] for r in mine} == set(cm)
    for r in mine:
        pc, pb = cm[r["layer"]] == 0, bm[r["layer"]] == 0
        assert int(pc.sum()) == int(pb.sum())  # layer-matched: the same count in every layer
        assert r["causal_pruned"] == pytest.approx(100.0 * pc.float().mean().item())
        assert r["chance"] == pytest.approx(100.0 * pb.float().mean().item())
        if pc.any():
            assert r["shared"] == pytest.approx(100.0 * (pc & pb).sum().item() / pc.sum().item())
    assert "Within each layer" in study_markdown(t)


def test_the_html_report_carries_the_study(study_runs, tmp_path):
    _hessians_at_the_first_l1(study_runs)
    from causalprune.report.build import build_report

    page = build_report([str(study_runs)], tmp_path / "report.html").read_text()
    assert 'id="study"' in page and "Paired differences" in page and "transition width per seed" in page
    assert "Within each layer" in page and "causal ÷ baseline" in page


def test_hessian_at_an_l1_without_runs_is_a_one_line_error(study_runs, tmp_path, capsys):
    assert main(["study", str(study_runs), "--out", str(tmp_path / "s"), "--hessian-at", "1e-3"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matches no finished causal run" in err and "5e-13" in err
    assert not (tmp_path / "s").exists()


def test_l1_values_print_with_all_their_digits():
    from causalprune.results.study import study_markdown

    t = {"groups": 0, "seeds": [], "accuracy": [{"l1_coeff": 1.6e-14, "method": "causal", "seeds": 1,
                                                 "pruned_mean": 95.0, "pruned_ci95": math.nan,
                                                 "accuracy_mean": 80.0, "accuracy_ci95": math.nan}],
         "per_seed": [], "pairs": [], "overall": [], "widths": [], "eigenvalues": [], "sharpness": [], "overlaps": []}
    assert "| 1.6e-14 | causal |" in study_markdown(t)  # not rounded to 2e-14
