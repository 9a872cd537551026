"""The Triton kernel of the coordinate-parallel Lasso (solvers/coord_triton.py), run on the CPU
through Triton's interpreter: γ bit for bit the numba kernels' in the paper's regime (every
feature kind, fp32 and bf16, several programs per block, and with the columns of a host-resident
recording streamed in chunks), and the coupled torch path taking over where γ·x matters. ``TRITON_INTERPRET`` must be set before triton is imported, so the
checks run in a fresh interpreter process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import torch, triton, triton.language as tl
@triton.jit
def k(x, n, B: tl.constexpr):
    c = tl.arange(0, B)
    tl.store(x + c, tl.load(x + c, mask=c < n) * 2.0, mask=c < n)
x = torch.ones(4)
k[(1,)](x, 4, B=8)
assert x.tolist() == [2.0] * 4
"""

CHECKS = """
import json, sys, torch
sys.path.insert(0, ".")
from tests.test_cuda_path import paper_blocks
from causalprune.solvers import FeatureBlock, solve_reference
from causalprune.solvers.blocks import LassoSchedule, step_schedule, visit_order
from causalprune.solvers.coord_triton import BLOCK, solve_coord_triton, solve_coord_triton_streamed

out = {}
for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    blocks, y = paper_blocks(T=10, d=BLOCK + 100, dtype=dtype)
    order = visit_order(10, 3, True, torch.Generator().manual_seed(0))
    etas, us = step_schedule(len(order), 2e-14, LassoSchedule())
    tri, exact = solve_coord_triton(blocks, y, order, etas, us, 1e12)
    ref = solve_reference(blocks, y, 2e-14, backend="numba", generator=torch.Generator().manual_seed(0))
    # a spilled recording: columns streamed in chunks (about 700 columns here: several per block)
    streamed, s_exact = solve_coord_triton_streamed(blocks, y, order, etas, us, 1e12, torch.device("cpu"),
                                                    chunk_bytes=700 * 12 * blocks[0].data.element_size())
    out[name] = dict(exact=exact and s_exact, equal=[bool(torch.equal(a, b)) for a, b in zip(tri, ref)],
                     streamed=[bool(torch.equal(a, b)) for a, b in zip(streamed, ref)],
                     kinds=[b.kind for b in blocks], kept=[float((g != 0).float().mean()) for g in ref])
g = torch.Generator().manual_seed(0)
X = torch.rand(20, 7, generator=g)
y = X @ torch.tensor([1.0, 0, 0, -2, 0, 0, 0.5])
order = visit_order(20, 3, True, torch.Generator().manual_seed(0))
etas, us = step_schedule(len(order), 1e-2, LassoSchedule())
_, exact = solve_coord_triton([FeatureBlock(X)], y, order, etas, us, 1e12)
a = solve_reference([FeatureBlock(X)], y, 1e-2, backend="triton", generator=torch.Generator().manual_seed(0))[0]
b = solve_reference([FeatureBlock(X)], y, 1e-2, backend="torch", generator=torch.Generator().manual_seed(0))[0]
out["coupled"] = dict(exact=exact, equal=bool(torch.equal(a, b)))
print("RESULT " + json.dumps(out))
"""


def _interpreted(code: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def interpreter():
    try:
        import triton  # noqa: F401
    except ImportError:
        pytest.skip("triton is not installed, so its interpreter cannot run here")
    probe = _interpreted(PROBE, 120)
    if probe.returncode != 0:
        pytest.skip(f"Triton's interpreter cannot run a trivial kernel here: {probe.stderr.strip()[-300:]}")


def test_triton_kernel_matches_the_numba_kernels_bit_for_bit(interpreter):
    proc = _interpreted(CHECKS, 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    for name in ("fp32", "bf16"):
        r = res[name]
        assert r["exact"], f"{name}: the paper's regime must decouple"
        assert set(r["kinds"]) == {"square", "cross", "linear"}
        assert 0 < max(r["kept"]) and min(r["kept"]) < 1, "some weights kept, some pruned"
        assert all(r["equal"]), f"{name}: Triton's γ differs from the numba kernels' for {r['kinds']}"
        assert all(r["streamed"]), f"{name}: streaming the columns in chunks changed γ"
    assert not res["coupled"]["exact"], "γ·x matters there: the check must fail"
    assert res["coupled"]["equal"], "the fallback must give the coupled torch path's γ"
