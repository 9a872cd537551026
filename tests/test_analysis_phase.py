"""Phase-shift figure of merit (paper Test 1), median curves, and the sweep figures (Fig. 1a, 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalprune.analysis import median_curve, medians_by_value, plot_phase, strip_plots, transition_width
from causalprune.errors import ConfigError


def test_step_has_width_at_most_one_grid_spacing():
    x = np.arange(0, 101, 1.0)
    y = np.where(x < 63, 90.0, 10.0)
    w = transition_width(x, y)
    assert 0 <= w <= 1.0
    assert w == pytest.approx(0.8)  # (hi - lo) of the one segment that holds the drop
    finer = np.arange(0, 100.5, 0.25)
    assert transition_width(finer, np.where(finer < 63, 90.0, 10.0)) == pytest.approx(0.2)


@pytest.mark.parametrize("lo,hi", [(0.1, 0.9), (0.25, 0.75), (0.0, 0.5)])
def test_linear_ramp_width_is_hi_minus_lo_of_its_range(lo, hi):
    x = np.linspace(20, 80, 13)
    y = np.interp(x, [20, 80], [70, 10])
    assert transition_width(x, y, hi=hi, lo=lo) == pytest.approx((hi - lo) * 60)
    # flat shoulders outside the ramp do not change the width
    xs = np.concatenate([[0, 10], x, [90, 100]])
    ys = np.concatenate([[70, 70], y, [10, 10]])
    assert transition_width(xs, ys, hi=hi, lo=lo) == pytest.approx((hi - lo) * 60)


def test_order_duplicates_and_nan_do_not_matter():
    x = np.linspace(0, 100, 11)
    y = np.interp(x, [0, 40, 60, 100], [80, 80, 20, 20])
    ref = transition_width(x, y)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    assert transition_width(x[perm], y[perm]) == pytest.approx(ref)
    # three seeds at each x: the median counts, the outliers do not
    xx = np.repeat(x, 3)
    yy = np.repeat(y, 3) + np.tile([0.0, 30.0, -30.0], len(x))
    assert transition_width(list(xx) + [math.nan], list(yy) + [5.0]) == pytest.approx(ref)
    assert ref == pytest.approx(0.8 * 20)


def test_accuracy_rising_before_the_drop_uses_the_maximum():
    # mild pruning raises accuracy (paper §4.1); the least-pruned point sits below A0 - lo*D
    x = [0, 50, 90, 95, 100]
    y = [60, 70, 70, 40, 10]
    # A0 = 70, A1 = 10, D = 60: levels 64 (at 91 on 90->95) and 16 (at 99 on 95->100)
    assert transition_width(x, y) == pytest.approx(99 - 91)


def test_no_drop_or_too_few_points_is_nan_and_bad_levels_raise():
    assert math.isnan(transition_width([0, 50, 100], [50, 60, 70]))
    assert math.isnan(transition_width([0, 50, 100], [70, 70, 70]))
    assert math.isnan(transition_width([10, 10], [70, 20]))
    with pytest.raises(ConfigError):
        transition_width([0, 1], [1, 0], hi=0.1, lo=0.9)
    with pytest.raises(ConfigError):
        transition_width([0, 1], [1, 0], hi=1.0)
    with pytest.raises(ConfigError):
        transition_width([0, 1, 2], [1, 0])


def test_median_curve_across_seeds():
    points = [(0, 80, 0), (50, 70, 0), (100, 10, 0),
              (0, 90, 1), (60, 60, 1), (100, 20, 1),
              (10, 85, 2), (50, 40, 2), (90, 30, 2)]
    c = median_curve(points)
    assert np.array_equal(c["x"], [0, 10, 50, 60, 90, 100])
    # at x=50: seed0 70, seed1 interp(50; 0->90, 60->60) = 65, seed2 40 -> median 65
    i = list(c["x"]).index(50)
    assert c["median"][i] == pytest.approx(65.0)
    assert (c["min"][i], c["max"][i]) == pytest.approx((40.0, 70.0))
    # x=0 is outside seed 2's range: it is not extrapolated
    assert c["n"][0] == 2 and c["median"][0] == pytest.approx(85.0)
    assert (c["min"] <= c["median"]).all() and (c["median"] <= c["max"]).all()


def _check_png(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
    img = mpimg.imread(path)
    assert img[..., :3].std() > 0.02
    return img


def test_plot_phase_png(tmp_path):
    x = np.linspace(0, 99, 12)
    curves = {
        "causal": [(p + s, 70.0 if p < 90 else 20.0, s) for s in range(3) for p in x],
        "magnitude": [(p, 70 - 0.5 * p + s, s) for s in range(3) for p in x],
    }
    plot_phase(curves, tmp_path / "phase.png", title="LeNet CIFAR-10")
    img = _check_png(tmp_path / "phase.png")
    assert img.shape[0] > 400 and img.shape[1] > 600  # 6.4 x 4.6 in at 120 dpi


def test_strip_plot_medians_and_png(tmp_path):
    rows = []
    for seed in range(3):
        for n_iter in (1, 5, 10):
            rows.append({"n_iter": n_iter, "n_prune": 10, "l1_coeff": 1e-14, "seed": seed,
                         "test_accuracy": 60 + n_iter + seed, "percent_pruned": 9 * n_iter - seed})
    for l1 in (1e-18, 1e-12):
        rows.append({"n_iter": 10, "n_prune": 10, "l1_coeff": l1, "test_accuracy": 50.0,
                     "percent_pruned": float("nan")})
    med = medians_by_value(rows, "n_iter", "test_accuracy")
    assert list(med) == [1, 5, 10]
    assert med[1] == 62 and med[5] == 66
    assert med[10] == pytest.approx(np.median([70, 71, 72, 50, 50]))
    assert medians_by_value(rows, "l1_coeff", "percent_pruned") == {1e-14: pytest.approx(np.median(
        [9 * n - s for s in range(3) for n in (1, 5, 10)]))}  # NaN rows dropped
    strip_plots(rows, tmp_path / "strip.png")
    img = _check_png(tmp_path / "strip.png")
    assert img.shape[1] > img.shape[0]  # 3 columns, 2 rows
