"""The report's statistics (analysis/stats.py) on hand-checkable cases, the findings' verdicts
following them, and the committed sweep's numbers as the READMEs quote them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from causalprune.analysis.findings import MIN_TOL, layer_matched_findings, paired_gaps
from causalprune.analysis.stats import (
    ALPHA,
    min_units,
    paired_test,
    rank_direction,
    sign_test,
    signed_rank_p,
    t_interval,
    unit_means,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]


# -- the statistics --------------------------------------------------------------------------------
def test_sign_test_ten_of_ten_is_two_in_1024():
    t = sign_test([0.5] * 10)
    assert (t.positive, t.negative) == (10, 0)
    assert t.pvalue == pytest.approx(2 / 1024)  # both tails of 1/2**10
    assert sign_test([-1.0, 2.0]).pvalue == pytest.approx(1.0)
    assert sign_test([-1.0, -2.0]).pvalue == pytest.approx(0.5)


def test_zeros_favour_neither_side():
    t = sign_test([0.0, 0.0, 1.0])
    assert (t.positive, t.negative) == (1, 0) and t.pvalue == pytest.approx(1.0)
    assert sign_test([0.0, 0.0]).pvalue == 1.0 and signed_rank_p([0.0, 0.0, 0.0]) == 1.0


def test_signed_rank_exact_small_cases():
    # all of 1..6 positive: only one of the 2**6 sign patterns is as extreme on each side
    assert signed_rank_p([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)
    # the smallest one negative: W- = 1, reached by 2 patterns per side
    assert signed_rank_p([-1, 2, 3, 4, 5, 6]) == pytest.approx(4 / 64)
    assert signed_rank_p([-3.0, -1.0]) == pytest.approx(0.5)
    assert rank_direction([-1, 2, 3]) == 1 and rank_direction([1, -2, -3]) == -1 and rank_direction([0.0]) == 0


def test_t_interval_by_hand_and_on_a_planted_sample():
    lo, hi = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} * s / sqrt(n)
    assert (lo, hi) == pytest.approx((3 - half, 3 + half))
    noise = np.random.default_rng(7).normal(0.0, 2.0, size=20)
    lo, hi = t_interval(1.3 + np.concatenate([noise, -noise]))  # planted: the sample mean is exactly 1.3
    assert lo < 1.3 < hi and hi - lo < 2.0
    draws = np.random.default_rng(8).normal(1.3, 2.0, size=(2000, 5))
    covered = np.mean([lo < 1.3 < hi for lo, hi in map(t_interval, draws)])
    assert 0.93 < covered < 0.97  # a 95% interval, even from 5 values of a normal sample
    assert t_interval([4.0, 4.0, 4.0]) == (4.0, 4.0)  # all equal: a point, not NaN
    assert all(math.isnan(x) for x in t_interval([4.0]))


def test_all_equal_differences():
    level = paired_test([0, 1, 2], [0.0, 0.0, 0.0], margin=MIN_TOL)
    assert level.verdict == "level" and level.signed_rank_p == 1.0 and level.interval == (0.0, 0.0)
    ahead = paired_test(list(range(6)), [2.0] * 6, margin=MIN_TOL)
    assert ahead.interval == (2.0, 2.0) and ahead.signed_rank_p < ALPHA and ahead.verdict == "higher"


def test_pairs_collapse_to_one_difference_per_seed():
    assert unit_means([1, 0, 1, 0], [1.0, 2.0, 3.0, 6.0]) == {0: 4.0, 1: 2.0}
    # the committed two-seed comparison's shape: 10 of 10 pairs one way, but only 2 seeds
    t = paired_test([0] * 5 + [1] * 5, [-0.2, -1.1, -3.0, -13.3, -26.0, -0.5, -0.9, -1.6, -1.3, -12.5],
                    margin=MIN_TOL)
    assert (t.pairs, t.pairs_negative, t.n) == (10, 10, 2)
    assert t.sign.pvalue == pytest.approx(0.5) and t.signed_rank_p == pytest.approx(0.5)
    assert t.verdict == "inconclusive"
    assert min_units(0.05) == 6 and 2 / 2 ** 5 >= 0.05 > 2 / 2 ** 6


def test_verdict_rule():
    assert verdict(0, math.nan, (math.nan, math.nan), 1.0, MIN_TOL) == "none"
    assert verdict(6, 1.0, (0.5, 1.5), 0.03, MIN_TOL) == "higher"
    assert verdict(6, -1.0, (-1.5, -0.5), 0.03, MIN_TOL) == "lower"
    assert verdict(6, 1.0, (-0.2, 2.2), 0.06, MIN_TOL) == "inconclusive"  # p decides, not the size
    assert verdict(6, 0.1, (-0.3, 0.4), 0.5, MIN_TOL) == "level"
    assert verdict(6, -0.1, (-0.6, 0.4), 0.5, MIN_TOL) == "inconclusive"  # interval leaves the margin
    assert verdict(6, -0.1, (-0.6, 0.4), 0.01, MIN_TOL, direction=1) != "lower"  # ranks and mean disagree


# -- the findings' verdicts follow the tests ----------------------------------------------------------
def _pairs(diffs_by_seed):
    """causal and layer-matched magnitude rows whose differences per seed are given."""
    rows = []
    for seed, diffs in diffs_by_seed.items():
        for i, d in enumerate(diffs):
            src = f"/r/causal-s{seed}-{i}"
            rows.append({"curve": "causal", "seed": seed, "percent_pruned": 50.0 + i, "test_accuracy": 80.0 + d,
                         "run_dir": src, "match_layers": ""})
            rows.append({"curve": "magnitude (layer-matched)", "seed": seed, "percent_pruned": 50.0 + i,
                         "test_accuracy": 80.0, "run_dir": f"/r/mag-s{seed}-{i}", "match_layers": src})
    return rows


def test_a_large_consistent_gap_needs_enough_seeds():
    # The same +10 points in every pair: a rule on the size of the mean would call both "higher".
    two = paired_gaps(_pairs({0: [10.0] * 5, 1: [10.0] * 5}), "magnitude (layer-matched)")
    assert two["verdict"] == "inconclusive" and two["test"].signed_rank_p == pytest.approx(0.5)
    six = paired_gaps(_pairs({s: [10.0 + s] for s in range(6)}), "magnitude (layer-matched)")
    assert six["verdict"] == "higher" and six["test"].signed_rank_p == pytest.approx(2 / 64)
    text = " ".join(layer_matched_findings(_pairs({0: [10.0] * 5, 1: [10.0] * 5}))["text"])
    assert "inconclusive" in text and "signed-rank test p = 0.5" in text and "at least 6 seeds" in text
    assert "behind in 0 of the 10 single pairs" in text


@pytest.mark.parametrize("seed", range(25))
def test_findings_verdict_is_the_tests_verdict(seed):
    rng = np.random.default_rng(seed)
    n_seeds, per = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    shift, spread = rng.choice([0.0, 0.3, 2.0]), rng.choice([0.05, 1.0, 5.0])
    diffs = {s: list(shift + spread * rng.standard_normal(per)) for s in range(n_seeds)}
    g = paired_gaps(_pairs(diffs), "magnitude (layer-matched)")
    per_seed = [float(np.mean(v)) for v in diffs.values()]
    p = signed_rank_p(per_seed)
    assert g["test"].signed_rank_p == pytest.approx(p)
    assert g["verdict"] == verdict(n_seeds, float(np.mean(per_seed)), t_interval(per_seed), p, MIN_TOL, ALPHA,
                                   rank_direction(per_seed))
    if g["verdict"] in ("higher", "lower"):
        assert p < ALPHA


# -- the committed sweeps, as the READMEs quote them -------------------------------------------------
def test_committed_two_seed_comparison_is_what_the_readmes_say():
    from causalprune.report.build import sweep_findings

    text = sweep_findings(str(ROOT / "results" / "fmnist-sweep" / "two-seeds"))
    quoted = ["mean per-seed difference -6.04 points over 2 seeds", "95% t interval -40.31 to +28.23",
              "sign test p = 0.5, signed-rank test p = 0.5", "behind in 10 of the 10 single pairs",
              "The layer-matched comparison is inconclusive"]
    for q in quoted:
        assert q in text
    readmes = (ROOT / "README.md").read_text() + (ROOT / "results" / "README.md").read_text()
    assert "p = 0.002" not in readmes and "causal-prune report --sweep results/fmnist-sweep/two-seeds --findings" \
        in readmes
    for number in ("−6.04", "−40.3", "+28.2", "p = 0.5"):
        assert number in readmes


def test_findings_flag_prints_from_sweep_csv_alone(capsys):
    from causalprune.cli import main

    sweep = str(ROOT / "results" / "fmnist-sweep")
    assert main(["report", "--sweep", sweep, "--findings"]) == 0
    out = capsys.readouterr().out
    assert "mean per-seed difference -8.73 points over 1 seed" in out and "A pair is a causal run" in out
    assert main(["report", "some-run", "--sweep", sweep, "--findings"]) == 2
    err = capsys.readouterr().err
    assert "--findings reads a sweep.csv alone" in err and len(err.strip().splitlines()) == 1
