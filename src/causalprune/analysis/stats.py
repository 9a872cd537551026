"""Tests and intervals for paired differences, computed with scipy: what the report's verdicts rest on.

Plain numbers in, a small frozen dataclass out; nothing here reads files or touches a model.

The unit of the tests is the *seed*, not the single pair. Runs of one seed share their pretrained
weights and their batches (both follow from the seed), so the several pairs of one seed (one per
L1_coeff / target sparsity) are not independent draws: a bad pretraining moves all of them
together. Testing every pair as if it were independent would overstate the evidence. So
:func:`paired_test` first collapses each seed to one difference, the mean over that seed's pairs,
and tests those; the per-pair counts are kept only as a description.

The verdict follows the two-sided Wilcoxon signed-rank test on the per-seed differences at
``ALPHA``: it assumes no normal distribution, which a handful of seeds could not check. The sign
test and a t interval for the mean per-seed difference are reported beside it. With n seeds the
smallest two-sided p-value either rank test can give is 2 / 2**n, so fewer than 6 seeds can never
reach p < 0.05 (:func:`min_units`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["ALPHA", "LEVEL", "SignTest", "PairedTest", "sign_test", "signed_rank_p", "t_interval", "unit_means",
           "min_units", "rank_direction", "paired_test", "verdict"]

ALPHA = 0.05  # two-sided significance level of every verdict
LEVEL = 0.95  # coverage of the t interval (1 - ALPHA, so the two agree on what is "clear")


@dataclass(frozen=True)
class SignTest:
    positive: int  # differences above zero
    negative: int  # differences below zero (exact zeros count for neither)
    pvalue: float  # two-sided binomial test of positive out of positive + negative at 1/2


@dataclass(frozen=True)
class PairedTest:
    """One difference per unit (seed), tested; ``pairs_*`` describe the pairs before collapsing."""

    n: int  # units (seeds) with at least one pair
    mean: float  # mean of the per-unit differences (NaN without units)
    interval: tuple[float, float]  # t interval at LEVEL for that mean (NaN with fewer than 2 units)
    sign: SignTest  # on the per-unit differences
    signed_rank_p: float  # two-sided Wilcoxon signed-rank test on the per-unit differences
    per_unit: dict  # unit -> its mean difference
    pairs: int  # pairs before collapsing
    pairs_positive: int
    pairs_negative: int
    verdict: str  # higher / lower / level / inconclusive / none, see verdict()


def _nonzero(diffs: Sequence[float]) -> np.ndarray:
    d = np.asarray(diffs, dtype=float)
    return d[d != 0]


def sign_test(diffs: Sequence[float]) -> SignTest:
    """Two-sided sign test; zero differences are dropped (they favour neither side)."""
    d = _nonzero(diffs)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    p = float(_st.binomtest(pos, pos + neg, 0.5, alternative="two-sided").pvalue) if pos + neg else 1.0
    return SignTest(pos, neg, p)


def signed_rank_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value; zeros dropped first ("wilcox" rule), 1.0 when none is left
    (scipy itself warns and divides by zero on an all-zero sample)."""
    d = _nonzero(diffs)
    return float(_st.wilcoxon(d, alternative="two-sided").pvalue) if len(d) else 1.0


def t_interval(diffs: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student t interval for the mean; (NaN, NaN) below 2 values, a point when all values are equal
    (scipy's t.interval refuses a zero scale)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    half = float(_st.t.ppf(0.5 + level / 2, len(d) - 1)) * se
    return mean - half, mean + half


def unit_means(units: Sequence[Hashable], diffs: Sequence[float]) -> dict:
    """unit -> mean of its differences, units in sorted order (each unit then counts once)."""
    groups: dict = {}
    for u, x in zip(units, diffs):
        groups.setdefault(u, []).append(float(x))
    return {u: float(np.mean(groups[u])) for u in sorted(groups, key=repr)}


def min_units(alpha: float = ALPHA) -> int:
    """Fewest units with which a two-sided sign or signed-rank test can reach p < alpha (2 / 2**n < alpha)."""
    n = 1
    while 2 / 2 ** n >= alpha:
        n += 1
    return n


def rank_direction(diffs: Sequence[float]) -> int:
    """+1 / -1 / 0: the side the signed ranks favour (the side a small signed-rank p points to)."""
    d = _nonzero(diffs)
    return int(np.sign(float((np.sign(d) * _st.rankdata(np.abs(d))).sum()))) if len(d) else 0


def verdict(n: int, mean: float, interval: tuple[float, float], p: float, margin: float, alpha: float = ALPHA,
            direction: int | None = None) -> str:
    """higher / lower only when the test says so (p < alpha, and the mean lies on the side the ranks
    favour); level when it does not and the whole interval lies within +-margin (a difference too
    small to matter); inconclusive otherwise."""
    if n == 0:
        return "none"
    side = 1 if mean > 0 else -1 if mean < 0 else 0
    if p < alpha and side != 0 and direction in (None, side):
        return "higher" if side > 0 else "lower"
    lo, hi = interval
    if math.isfinite(lo) and math.isfinite(hi) and -margin <= lo and hi <= margin:
        return "level"
    return "inconclusive"


def paired_test(units: Sequence[Hashable], diffs: Sequence[float], *, margin: float,
                alpha: float = ALPHA) -> PairedTest:
    """Collapse the paired differences to one per unit, test them and give the verdict."""
    per = unit_means(units, diffs)
    u = list(per.values())
    pair_sign = sign_test(diffs)
    mean = float(np.mean(u)) if u else math.nan
    interval = t_interval(u)
    p = signed_rank_p(u)
    return PairedTest(n=len(u), mean=mean, interval=interval, sign=sign_test(u), signed_rank_p=p, per_unit=per,
                      pairs=len(diffs), pairs_positive=pair_sign.positive, pairs_negative=pair_sign.negative,
                      verdict=verdict(len(u), mean, interval, p, margin, alpha, rank_direction(u)))
