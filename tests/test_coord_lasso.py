"""The coordinate-parallel reference Lasso (solvers/coord_cpu.py): bit for bit the coupled
per-sample kernel's γ in the paper's regime, for every feature kind and storage type, and the
coupled kernel taking over, with the same result, where γ·x is not negligible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from causalprune.record.features import layer_features
from causalprune.record.slots import LayerSlot
from causalprune.solvers import FeatureBlock, LassoSchedule, lasso_sgd, solve_reference
from causalprune.solvers.blocks import step_schedule, visit_order
from causalprune.solvers.coord_cpu import TILE, solve_coordinate
from causalprune.solvers.decoupling import first_coupled_step, rounding_margins

LR = 1e-3  # the pruning phase's SGD learning rate: features are lr²·(Δθ/lr)² ≈ 1e-12


def recording(T: int = 60, d: int = 9_000, seed: int = 0, dtype=torch.float32, cols: slice | None = None):
    """Δθ/lr ~ 1e-3 per step (so x = lr²·(Δθ/lr)² ≈ 1e-12) and ΔL ~ 1e-2, correlated with the
    squared deltas of the first third of the weights: the paper's regime."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(T + 2, d, generator=g) * 1e-3
    y = 0.01 * torch.randn(T, generator=g) + 2e4 * (D[:T, : d // 3] ** 2).mean(1)
    return D.to(dtype), y


def blocks_of(kind: str, D: torch.Tensor) -> list[FeatureBlock]:
    """The blocks the recorder builds for each feature kind (record/features.py)."""
    scale = LR**2
    if kind == "square":
        return [FeatureBlock(D, kind="square", scale=scale)]
    if kind == "cross":  # the momentum model: three features per weight (Appendix A, eq. 16)
        return [FeatureBlock(D, kind="square", row0=1, scale=scale), FeatureBlock(D, kind="square", scale=scale),
                FeatureBlock(D, kind="cross", scale=scale)]
    if kind == "linear":  # features handed over ready-made, e.g. by the online solver
        return [FeatureBlock((D.float() ** 2 * scale).to(D.dtype), kind="linear")]
    if kind == "groups":  # weight sharing: one γ per output filter, group sums of squared deltas
        conv = nn.Conv2d(3, D.shape[1] // 27, 3)
        slot = LayerSlot("conv.weight", conv.weight, None, 0, conv.weight.numel())
        return layer_features(D[:, : conv.weight.numel()], [slot], LR, momentum=False, granularity="filter")[0].blocks
    raise AssertionError(kind)


def coupled(blocks, y, l1, **kw) -> list[torch.Tensor]:
    return solve_reference(blocks, y, l1, backend="coupled", **kw)


def run_both(blocks, y, l1, *, seed=0, epochs=3, shuffle=True):
    """(coordinate-parallel result, its run record, the coupled kernel's result), same visit order."""
    sched = LassoSchedule(epochs=epochs)
    order = visit_order(int(y.shape[0]), epochs, shuffle, torch.Generator().manual_seed(seed))
    etas, us = step_schedule(len(order), l1, sched)
    got, run = solve_coordinate(blocks, y, order, etas, us, sched.grad_clip)
    ref = coupled(blocks, y, l1, schedule=sched, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))
    return got, run, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind,l1", [("square", 2e-14), ("cross", 2e-14), ("linear", 2e-14), ("groups", 5.5e-13)])
def test_bit_for_bit_in_the_papers_regime(kind, l1, dtype):
    D, y = recording(dtype=dtype)
    blocks = blocks_of(kind, D)
    got, run, ref = run_both(blocks, y, l1)
    assert not run.fell_back and not run.traced and run.exact_steps == 3 * 60
    kept = torch.cat([g != 0 for g in ref])
    assert 0 < int(kept.sum()) < kept.numel(), "the data must keep some weights and prune others"
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    # and it is what the reference solver's default dispatch returns
    default = solve_reference(blocks, y, l1, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(default, ref))


def test_tiles_blocks_and_column_slices():
    """Several blocks, each cut into tiles that end off the lane grid, read in place from column
    slices of one recording (row stride > width), in a plain (unshuffled) order."""
    D, y = recording(T=30, d=3 * TILE + 1_000, seed=4, dtype=torch.bfloat16)
    a, b = D[:, :TILE + 37], D[:, TILE + 37:]
    assert not a.is_contiguous()
    blocks = [FeatureBlock(a, kind="square", scale=LR**2), FeatureBlock(b, kind="cross", row0=1, scale=LR**2)]
    for shuffle in (False, True):
        got, run, ref = run_both(blocks, y, 2e-14, shuffle=shuffle, epochs=2, seed=3)
        assert not run.fell_back
        assert any(bool((g != 0).any()) for g in ref) and any(bool((g == 0).any()) for g in ref)
        assert all(torch.equal(x, z) for x, z in zip(got, ref))


def test_lasso_sgd_default_equals_coupled_on_a_paper_like_matrix():
    g = torch.Generator().manual_seed(7)
    X = torch.rand(50, 5_000, generator=g) * 1e-12
    y = 0.05 * torch.randn(50, generator=g) + 0.2 * (X[:, :100].mean(1) / 1e-12 - 0.5)
    a = lasso_sgd(X, y, 3e-15, generator=torch.Generator().manual_seed(1))
    b = lasso_sgd(X, y, 3e-15, generator=torch.Generator().manual_seed(1), backend="coupled")
    assert 0 < int((b != 0).sum()) < b.numel()
    assert torch.equal(a, b)


def test_fallback_from_the_first_step_where_gamma_x_matters():
    """x ~ 1, y ~ 1: the coordinates interact from the second step on."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 7, generator=g)
    y = X @ torch.tensor([1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.5]) + 0.01 * torch.randn(40, generator=g)
    got, run, ref = run_both([FeatureBlock(X)], y, 1e-2)
    assert run.fell_back and run.traced and run.exact_steps == 1  # step 0 is exact (γ = 0), step 1 is not
    assert torch.equal(got[0], ref[0])
    assert torch.equal(lasso_sgd(X, y, 1e-2, generator=torch.Generator().manual_seed(0)), ref[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fallback_from_a_later_visit(dtype):
    """One sample with features ~ 1 among ~1e-12 ones: γ grows when it is visited, and its
    *next* visit (in a later epoch) is the first step whose residual γ·x would change."""
    D, y = recording(T=40, d=5_000, seed=2)
    D[9] = 1.0 / LR  # x_9 = lr²·(1/lr)² = 1 for every weight
    D = D.to(dtype)
    blocks = blocks_of("square", D)
    got, run, ref = run_both(blocks, y, 2e-14)
    assert run.fell_back and run.traced and 40 < run.exact_steps < 120, run
    order = visit_order(40, 3, True, torch.Generator().manual_seed(0))
    assert order[run.exact_steps] == 9 and 9 in order[:run.exact_steps]
    assert torch.equal(got[0], ref[0])


def test_non_finite_features_fall_back_and_raise_like_the_coupled_solver():
    from causalprune.errors import DataError
    from causalprune.solvers.fused_cpu import solve_fused

    D, y = recording(T=20, d=300)
    D[5, 17] = float("inf")
    blocks = blocks_of("square", D)
    order = visit_order(20, 3, True, torch.Generator().manual_seed(0))
    etas, us = step_schedule(len(order), 2e-14, LassoSchedule())
    got, run = solve_coordinate(blocks, y, order, etas, us, 1e12)
    ref = solve_fused(blocks, y, order, etas, us, 1e12)
    assert run.fell_back and not bool(torch.isfinite(ref[0]).all())
    assert torch.equal(got[0].view(torch.int32), ref[0].view(torch.int32))  # NaN for NaN, bit for bit
    with pytest.raises(DataError, match="NaN"):
        solve_reference(blocks, y, 2e-14, generator=torch.Generator().manual_seed(0))


def test_rounding_margins():
    y = np.array([0.01, 1.0, -1.0, 0.0, 3.0e-5], dtype=np.float32).astype(np.float64)
    m = rounding_margins(y)
    ulp = np.spacing(np.abs(y).astype(np.float32)).astype(np.float64)
    assert np.all(m >= ulp / 4) and np.all(m > 0)
    assert m[1] == ulp[1] / 4  # 1.0: the float32 below is half an ulp away, the edge a quarter
    mid = (1.0 + float(np.nextafter(np.float32(1.0), np.float32(2.0)))) / 2
    assert rounding_margins(np.array([mid]))[0] == 0.0  # on an edge: nothing is safe
    # anything strictly inside the margin rounds to fl32(y); just outside it does not (for 1.0)
    for yi, mi in zip(y, m):
        assert np.float32(yi - mi * 0.999) == np.float32(yi) == np.float32(yi + mi * 0.999)
    assert np.float32(1.0 - m[1] * 1.001) != np.float32(1.0)


def test_first_coupled_step():
    order = np.array([0, 1, 2, 1, 0, 2])
    margins = np.full(3, 1e-10)
    S = np.array([1.0, 1.0, 1e6])
    g = np.array([0.0, 1e-20, 1e-20, 1e-20, 1e-20, 1e-20], dtype=np.float32)
    assert first_coupled_step(order, g, S, margins) == 6
    g[2] = 1e-15  # after step 2, sample 1 (S = 1) is fine but sample 2 (S = 1e6) would not be
    assert first_coupled_step(order, g, S, margins) == 6
    g[4] = 1e-15  # step 5 visits sample 2 with G·S = 1e-9 > 1e-10
    assert first_coupled_step(order, g, S, margins) == 5
    g[0] = np.nan
    assert first_coupled_step(order, g, S, margins) == 1
    assert first_coupled_step(order, np.zeros(6, np.float32), np.array([np.inf, 1, 1]), margins) == 4
