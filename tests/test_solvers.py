"""The paper's Lasso solver (cumulative-penalty SGD, method-facts §2): parity with a plain
Python implementation, agreement of every back end and block form, the streaming variant."""

from __future__ import annotations

import numba
import pytest
import torch

from causalprune.errors import CheckpointError, ConfigError, DataError
from causalprune.solvers import (
    SOLVERS,
    FeatureBlock,
    LassoSchedule,
    OnlineLasso,
    get_solver,
    lasso_sgd,
    solve_online,
    solve_reference,
)
from causalprune.storage import load_checkpoint, save_checkpoint

BACKENDS = ["numba", "torch"]


def python_lasso(X, y, l1, *, lr0=1e-2, power_t=0.25, epochs=3, order=None, clip=1e12):
    """Method-facts §2 written out per sample and per coordinate, in float64 Python scalars."""
    X, y = X.double().tolist(), y.double().tolist()
    n, d = len(X), len(X[0])
    gamma, q, s, u = [0.0] * d, [0.0] * d, 0, 0.0
    for e in range(epochs):
        for i in (order[e] if order is not None else range(n)):
            s += 1
            eta = lr0 / s**power_t
            u += eta * l1
            r = sum(gamma[k] * X[i][k] for k in range(d)) - y[i]
            for k in range(d):
                z = gamma[k] - eta * min(max(r * X[i][k], -clip), clip)
                if z > 0:
                    gamma[k] = max(0.0, z - (u + q[k]))
                elif z < 0:
                    gamma[k] = min(0.0, z + (u - q[k]))
                else:
                    gamma[k] = z
                q[k] += gamma[k] - z
    return torch.tensor(gamma, dtype=torch.float64)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (or ||a|| when b is zero)."""
    diff = float((a.double() - b.double()).norm())
    norm = float(b.double().norm())
    return diff / norm if norm else diff


def paper_regime(seed=0, T=40, d=7):
    """x ~ 1e-12 (like (Δθ)²), y ~ 0.05 (like ΔL), two weights correlated with y."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(T, d, generator=g) * 1e-12
    y = 0.05 * torch.randn(T, generator=g) + 0.2 * (X[:, 0] / 1e-12 - 0.5) - 0.2 * (X[:, 3] / 1e-12 - 0.5)
    return X, y


def coupled_regime(seed=0, T=40, d=7):
    """x ~ 1, y ~ 1: γ·x is not negligible, so the coordinates interact through r."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(T, d, generator=g)
    y = X @ torch.tensor([1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.5]) + 0.01 * torch.randn(T, generator=g)
    return X, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("regime,l1", [(paper_regime, 1e-14), (paper_regime, 3e-15), (coupled_regime, 5e-2)])
def test_matches_plain_python(backend, regime, l1):
    X, y = regime()
    ref = python_lasso(X, y, l1)
    got = lasso_sgd(X, y, l1, shuffle=False, backend=backend)
    assert got.dtype == torch.float32 and got.shape == (7,)
    assert 0 < int((ref != 0).sum()) < 7, "the data must exercise both pruned and kept weights"
    assert torch.equal(got != 0, ref != 0)
    assert rel_err(got, ref) <= 1e-6


def test_shuffle_uses_one_randperm_per_epoch():
    X, y = coupled_regime(seed=3)
    g = torch.Generator().manual_seed(11)
    order = [torch.randperm(40, generator=g).tolist() for _ in range(3)]
    ref = python_lasso(X, y, 1e-2, order=order)
    got = lasso_sgd(X, y, 1e-2, generator=torch.Generator().manual_seed(11))
    assert rel_err(got, ref) <= 1e-6
    again = lasso_sgd(X, y, 1e-2, generator=torch.Generator().manual_seed(11))
    other = lasso_sgd(X, y, 1e-2, generator=torch.Generator().manual_seed(12))
    assert torch.equal(got, again)
    assert not torch.equal(got, other)


def _mixed_blocks(dtype=torch.float32, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = (torch.randn(T + 2, 50, generator=g) * 1e-4).to(dtype)
    E = (torch.randn(T + 1, 20_000, generator=g) * 1e-4).to(dtype)  # two work units (CHUNK = 16384)
    blocks = [FeatureBlock(D, kind="square", row0=1, scale=1e-3), FeatureBlock(D, kind="square", row0=0, scale=1e-3),
              FeatureBlock(D, kind="cross", row0=0, scale=1e-3), FeatureBlock(E, kind="square", scale=1e-3)]
    y = 0.05 * torch.randn(T, generator=g) + 1e5 * (D[1:T + 1, 0].float() ** 2)
    return blocks, y


def test_numba_and_torch_agree_on_mixed_blocks():
    blocks, y = _mixed_blocks()
    kw = dict(generator=None, shuffle=True, schedule=LassoSchedule(epochs=2))
    a = solve_reference(blocks, y, 1e-13, backend="numba", **kw)
    b = solve_reference(blocks, y, 1e-13, backend="torch", **kw)
    assert any(bool((x != 0).any()) for x in a) and any(bool((x == 0).any()) for x in a)
    for x, z in zip(a, b):
        assert torch.equal(x != 0, z != 0)
        assert rel_err(x, z) <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_block_equals_concatenated(backend):
    X, y = coupled_regime(T=40, d=7)
    parts = solve_reference([FeatureBlock(X[:, :3]), FeatureBlock(X[:, 3:5]), FeatureBlock(X[:, 5:])], y, 1e-2,
                            shuffle=False, backend=backend)
    whole = lasso_sgd(X, y, 1e-2, shuffle=False, backend=backend)
    assert [p.shape[0] for p in parts] == [3, 2, 2]
    assert rel_err(torch.cat(parts), whole) <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_square_and_cross_equal_materialised(backend):
    g = torch.Generator().manual_seed(5)
    T, s = 25, 1e-2
    D = torch.randn(T + 2, 9, generator=g)
    y = torch.randn(T, generator=g)
    lazy = [FeatureBlock(D, kind="square", row0=1, scale=s), FeatureBlock(D, kind="square", row0=0, scale=s),
            FeatureBlock(D, kind="cross", row0=0, scale=s)]
    eager = [FeatureBlock((D[1:T + 1] * D[1:T + 1]) * s), FeatureBlock((D[:T] * D[:T]) * s),
             FeatureBlock((D[:T] * D[1:T + 1]) * s)]
    a = solve_reference(lazy, y, 1e-3, backend=backend, generator=torch.Generator().manual_seed(0))
    b = solve_reference(eager, y, 1e-3, backend=backend, generator=torch.Generator().manual_seed(0))
    for x, z in zip(a, b):
        assert rel_err(x, z) <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["linear", "square", "cross"])
def test_bf16_equals_its_fp32_upcast(backend, kind):
    blocks, y = _mixed_blocks(torch.bfloat16, T=8)
    bf = [FeatureBlock(blocks[3].data, kind=kind, scale=1e-3)]
    up = [FeatureBlock(blocks[3].data.float(), kind=kind, scale=1e-3)]
    a = solve_reference(bf, y, 1e-13, backend=backend)[0]
    b = solve_reference(up, y, 1e-13, backend=backend)[0]
    assert torch.equal(a, b)  # bf16 -> fp32 is exact, so the arithmetic is identical


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_column_slice_of_a_recording_is_read_in_place(dtype):
    g = torch.Generator().manual_seed(2)
    rec = (torch.randn(20, 30_000, generator=g) * 1e-3).to(dtype)
    y = torch.randn(20, generator=g)
    view = rec[:, 10_000:27_000]
    assert not view.is_contiguous()
    a = solve_reference([FeatureBlock(view, kind="square")], y, 1e-9)[0]
    b = solve_reference([FeatureBlock(view.contiguous(), kind="square")], y, 1e-9)[0]
    assert torch.equal(a, b)


def test_result_does_not_depend_on_thread_count():
    blocks, y = _mixed_blocks()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = solve_reference(blocks, y, 1e-13, backend="numba")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = solve_reference(blocks, y, 1e-13, backend="numba")
    finally:
        numba.set_num_threads(before)
    assert 0 < int((one[3] != 0).sum()) < one[3].numel()
    assert all(torch.equal(a, b) for a, b in zip(one, many))


def test_planted_sparse_signal_is_recovered():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 20, generator=g)
    w = torch.zeros(20)
    w[[2, 7, 13]] = torch.tensor([1.5, -2.0, 1.0])
    y = X @ w + 0.01 * torch.randn(300, generator=g)
    gamma = lasso_sgd(X, y, 1e-2, lr0=0.05, epochs=5, generator=torch.Generator().manual_seed(0))
    assert torch.nonzero(gamma).flatten().tolist() == [2, 7, 13]
    assert torch.allclose(gamma[[2, 7, 13]], w[[2, 7, 13]], atol=0.05)


def test_more_penalty_can_keep_more_weights_when_coupled():
    """Not monotone in l1_coeff once γ·x matters: a known counterexample, also in float64."""
    X = torch.tensor([[-1.0, -1.0], [2.0, -1.0], [1.0, -1.0], [0.0, 0.0]])
    y = torch.tensor([-1.0, -1.0, -2.0, -2.0])
    kept = [int((lasso_sgd(X, y, l1, lr0=0.5, epochs=2, shuffle=False) != 0).sum()) for l1 in (0.1, 0.3)]
    ref = [int((python_lasso(X, y, l1, lr0=0.5, epochs=2) != 0).sum()) for l1 in (0.1, 0.3)]
    assert kept == ref == [1, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_online_in_order_equals_one_unshuffled_epoch(backend):
    blocks, y = _mixed_blocks(T=15)
    blocks[3] = FeatureBlock((blocks[3].data * 1e-7).bfloat16(), kind="linear")  # x ~ 1e-11, bf16
    sched = LassoSchedule(epochs=1)
    ref = solve_reference(blocks, y, 1e-13, schedule=sched, shuffle=False, backend="numba")
    online = OnlineLasso([b.dim for b in blocks], 1e-13, schedule=sched, backend=backend)
    for i in range(15):
        online.update([_features(b, i) for b in blocks], float(y[i]))
    assert 0 < int((ref[3] != 0).sum()) < ref[3].numel()
    for a, b in zip(online.gammas(), ref):
        if backend == "numba":
            assert torch.equal(a, b)  # same chunked dot order, same float32 rounding
        else:
            assert rel_err(a, b) <= 1e-6
    assert all(torch.equal(a, b) for a, b in zip(solve_online(blocks, y, 1e-13, schedule=sched), ref))


def _features(block: FeatureBlock, i: int) -> torch.Tensor:
    a = block.data[block.row0 + i]
    if block.kind == "linear":
        return a  # handed over in its own dtype (bf16 here)
    b = a if block.kind == "square" else block.data[block.row0 + i + 1]
    return (a.float() * b.float()) * block.scale


def test_online_resumes_from_a_checkpoint(tmp_path):
    X, y = coupled_regime(T=40)
    full = OnlineLasso([7], 1e-2)
    first = OnlineLasso([7], 1e-2)
    for i in range(40):
        full.update([X[i]], float(y[i]))
        if i < 17:
            first.update([X[i]], float(y[i]))
    save_checkpoint(tmp_path / "online.pt", first.state_dict())
    resumed = OnlineLasso([7], 1e-2)
    resumed.load_state_dict(load_checkpoint(tmp_path / "online.pt"))
    for i in range(17, 40):
        resumed.update([X[i]], float(y[i]))
    assert torch.equal(resumed.gammas()[0], full.gammas()[0])
    with pytest.raises(CheckpointError):
        OnlineLasso([7], 2e-2).load_state_dict(first.state_dict())
    with pytest.raises(CheckpointError):
        OnlineLasso([7], 1e-2).load_state_dict({"dims": [7]})


def test_online_rejects_wrong_feature_sizes():
    online = OnlineLasso([3, 2], 0.1)
    with pytest.raises(DataError):
        online.update([torch.ones(3)], 1.0)
    with pytest.raises(DataError):
        online.update([torch.ones(3), torch.ones(5)], 1.0)


def test_invalid_problems_raise_user_errors():
    X, y = coupled_regime()
    with pytest.raises(ConfigError):
        FeatureBlock(X, kind="cube")
    with pytest.raises(DataError):
        solve_reference([FeatureBlock(X[:30])], y, 0.1)  # too few rows
    with pytest.raises(DataError):
        solve_reference([FeatureBlock(X, kind="cross")], y, 0.1)  # cross needs one more row
    with pytest.raises(DataError):
        lasso_sgd(X, torch.full((40,), float("nan")), 0.1)
    bad = X.clone()
    bad[5, 2] = float("inf")
    for backend in BACKENDS:
        with pytest.raises(DataError, match="NaN"):
            lasso_sgd(bad, y, 0.1, backend=backend)
    with pytest.raises(ConfigError):
        lasso_sgd(X, y, -1.0)
    with pytest.raises(ConfigError):
        lasso_sgd(X, y, 0.1, epochs=0)
    with pytest.raises(ConfigError):
        lasso_sgd(X, y, 0.1, backend="fortran")


def test_degenerate_sizes():
    assert torch.equal(lasso_sgd(torch.ones(0, 4), torch.ones(0), 0.1), torch.zeros(4))
    out = solve_reference([FeatureBlock(torch.ones(5, 0)), FeatureBlock(torch.ones(5, 2))], torch.ones(5), 1e-3)
    assert out[0].shape == (0,) and out[1].shape == (2,)


def test_registry_lists_every_solver():
    assert set(SOLVERS) == {"reference", "exact", "online"}
    X, y = coupled_regime()
    blocks = [FeatureBlock(X)]
    ref = get_solver("reference")(blocks, y, 1e-2, shuffle=False)
    assert torch.equal(ref[0], lasso_sgd(X, y, 1e-2, shuffle=False))
    one_pass = get_solver("online")(blocks, y, 1e-2)
    assert torch.equal(one_pass[0], lasso_sgd(X, y, 1e-2, shuffle=False, epochs=1))
    exact = get_solver("exact")(blocks, y, 1e-2)
    assert exact[0].shape == (7,) and exact[0].dtype == torch.float32
    with pytest.raises(ConfigError, match="online"):
        get_solver("lars")
