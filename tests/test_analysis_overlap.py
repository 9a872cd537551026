"""Mask overlap tables (paper Fig. 1b)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from causalprune.analysis import overlap_matrix, overlap_per_layer, pairwise_overlaps, percent_pruned, plot_overlaps
from causalprune.errors import MaskError


def u8(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.uint8)


# 10 weights in two layers; 1 = kept. Hand-counted below.
A = {"l1.weight": u8([[0, 0, 1], [1, 0, 1]]), "l2.weight": u8([0, 1, 1, 0])}
B = {"l1.weight": u8([[0, 1, 1], [0, 0, 1]]), "l2.weight": u8([1, 1, 0, 0])}
# pruned by A: l1 (0,0),(0,1),(1,1); l2 0,3        -> 5
# pruned by B: l1 (0,0),(1,0),(1,1); l2 2,3        -> 5
# both: l1 (0,0),(1,1); l2 3 -> 3; only A: l1 (0,1); l2 0 -> 2; only B: l1 (1,0); l2 2 -> 2; neither 3


def test_hand_counted_table_and_layout():
    m = overlap_matrix(A, B)
    assert m.shape == (2, 2)
    assert np.allclose(m, [[30.0, 20.0], [20.0, 30.0]])
    assert percent_pruned(A) == pytest.approx(50.0)
    # asymmetric case: the layout [[both, only a], [only b, neither]]
    c = {"l1.weight": u8([[0, 0, 0], [0, 0, 0]]), "l2.weight": u8([0, 0, 1, 1])}
    m = overlap_matrix(c, B)
    # c prunes all of l1 and l2[0:2] (8); B prunes 3 in l1 (all also by c) and l2[2:4] (not by c)
    assert np.allclose(m, [[30.0, 50.0], [20.0, 0.0]])
    assert np.allclose(overlap_matrix(B, c), m.T)


def test_per_layer_tables_weight_up_to_the_global_one():
    per = overlap_per_layer(A, B)
    assert set(per) == set(A)
    assert np.allclose(per["l2.weight"], [[25.0, 25.0], [25.0, 25.0]])
    sizes = {k: A[k].numel() for k in A}
    total = sum(sizes.values())
    assert np.allclose(sum(per[k] * sizes[k] / total for k in per), overlap_matrix(A, B))


def test_identical_masks_and_bool_or_float_masks():
    m = overlap_matrix(A, A)
    assert m[0, 1] == 0 and m[1, 0] == 0
    assert m[0, 0] == pytest.approx(percent_pruned(A))
    as_bool = {k: v.bool() for k, v in A.items()}
    as_float = {k: v.float() for k, v in B.items()}
    assert np.allclose(overlap_matrix(as_bool, as_float), overlap_matrix(A, B))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 60), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_property_sums_and_marginals(n1, n2, pa, pb, seed):
    g = torch.Generator().manual_seed(seed)
    a = {"x": (torch.rand(n1, generator=g) >= pa).to(torch.uint8), "y": (torch.rand(n2, 2, generator=g) >= pa).to(torch.uint8)}
    b = {"x": (torch.rand(n1, generator=g) >= pb).to(torch.uint8), "y": (torch.rand(n2, 2, generator=g) >= pb).to(torch.uint8)}
    m = overlap_matrix(a, b)
    assert m.sum() == pytest.approx(100.0)
    assert (m >= 0).all()
    assert m[0, 0] + m[0, 1] == pytest.approx(percent_pruned(a))  # row 0: pruned by a
    assert m[0, 0] + m[1, 0] == pytest.approx(percent_pruned(b))  # column 0: pruned by b
    assert np.allclose(overlap_matrix(b, a), m.T)


def test_pairwise_rows():
    c = {k: torch.ones_like(v) for k, v in A.items()}
    rows = pairwise_overlaps({"a": A, "b": B, "c": c})
    assert [(r["run_a"], r["run_b"]) for r in rows] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = rows[0]
    assert set(ab) == {"run_a", "run_b", "pa", "pb", "both", "only_a", "only_b", "neither"}
    assert (ab["pa"], ab["pb"], ab["both"], ab["only_a"], ab["only_b"], ab["neither"]) == pytest.approx(
        (50.0, 50.0, 30.0, 20.0, 20.0, 30.0))
    ac = rows[1]
    assert ac["pb"] == 0.0 and ac["only_a"] == pytest.approx(50.0) and ac["neither"] == pytest.approx(50.0)


def test_mismatched_sets_are_mask_errors():
    with pytest.raises(MaskError):
        overlap_matrix(A, {"l1.weight": A["l1.weight"]})
    with pytest.raises(MaskError):
        overlap_matrix(A, {**A, "l2.weight": u8([1, 1, 1])})
    with pytest.raises(MaskError):
        percent_pruned({})


def _check_png(path, min_bytes=5_000):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > min_bytes
    img = mpimg.imread(path)
    assert img[..., :3].std() > 0.02
    return img


def test_plot_overlaps_writes_pngs(tmp_path):
    runs = {"causal-1": A, "causal-2": B, "magnitude-1": {k: 1 - v for k, v in A.items()}}
    plot_overlaps(runs, tmp_path / "all.png")
    grid = _check_png(tmp_path / "all.png")
    plot_overlaps(runs, tmp_path / "rc.png", "causal vs magnitude", rows=["causal-1", "causal-2"],
                  cols=["magnitude-1"])
    _check_png(tmp_path / "rc.png")
    assert grid.shape[1] > 300
    with pytest.raises(MaskError):
        plot_overlaps(runs, tmp_path / "x.png", rows=["nope"], cols=["causal-1"])
