"""The accelerator path without a host sync per sample or per step, and its parity with the CPU.

The CPU tests run everywhere: the streamed fit of a host-resident (spilled) recording equals the
resident one, a target handed over as a tensor equals one handed over as a number, and the
device normalisation leaves the CPU alone. The tests marked ``cuda`` need a GPU (skipped
without one; ``bench/gpu_check.sh`` runs them): the per-step loops under
``torch.cuda.set_sync_debug_mode("error")``, and CPU-vs-CUDA parity of the solvers, the
recorder, a spilled recording, ``CausalPruner`` and a tiny end-to-end ``Experiment``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from causalprune.masks import ones_masks
from causalprune.record.recorder import Recorder, indexed_device
from causalprune.solvers import (
    FeatureBlock,
    LassoSchedule,
    OnlineLasso,
    solve_reference,
)
from causalprune.solvers.blocks import step_schedule, visit_order
from causalprune.solvers.streamed import solve_streamed
from causalprune.solvers.torch_path import solve_torch

CUDA = torch.cuda.is_available()
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
LR = 1e-3


def paper_blocks(T=30, d=700, dtype=torch.bfloat16, seed=0, device="cpu"):
    """Δθ/lr ~ 1e-3 (features lr²·(Δθ/lr)² ≈ 1e-12), ΔL ~ 1e-2 correlated with a third of the
    weights: the three momentum blocks (square, square one row on, cross) and a plain one."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(T + 2, d, generator=g) * 1e-3
    y = 0.01 * torch.randn(T, generator=g) + 2e4 * (D[:T, : d // 3] ** 2).mean(1)
    D = D.to(dtype).to(device)
    s = LR**2
    blocks = [FeatureBlock(D, kind="square", row0=1, scale=s), FeatureBlock(D, kind="square", scale=s),
              FeatureBlock(D, kind="cross", scale=s), FeatureBlock(D[:, : d // 2], kind="linear", scale=1e-12)]
    return blocks, y.to(device)


def _plan(n, epochs=3, l1=2e-14, seed=0):
    order = visit_order(n, epochs, True, torch.Generator().manual_seed(seed))
    etas, us = step_schedule(len(order), l1, LassoSchedule(epochs=epochs))
    return order, etas, us


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_streamed_fit_equals_the_resident_one(dtype):
    """Chunks of a few visits (so many chunks and a ragged last one) give the torch path's γ bit for bit."""
    blocks, y = paper_blocks(dtype=dtype)
    order, etas, us = _plan(30)
    resident = solve_torch(blocks, y, order, etas, us, 1e12)
    row = sum(b.dim * b.data.element_size() * (2 if b.kind == "cross" else 1) for b in blocks)
    streamed = solve_streamed(blocks, y, order, etas, us, 1e12, torch.device("cpu"), chunk_bytes=7 * row)
    assert any(bool((g != 0).any()) for g in resident) and any(bool((g == 0).any()) for g in resident)
    assert all(torch.equal(a, b) for a, b in zip(streamed, resident))


def test_online_target_as_tensor_or_number():
    blocks, y = paper_blocks(T=12, d=300, dtype=torch.float32)
    from causalprune.solvers.blocks import block_features

    a = OnlineLasso([b.dim for b in blocks], 2e-14)
    b = OnlineLasso([b.dim for b in blocks], 2e-14)
    for i in range(12):
        xs = [block_features(blk, i)[0] for blk in blocks]
        a.update(xs, float(y[i]))
        b.update(xs, y[i:i + 1])
    assert all(torch.equal(p, q) for p, q in zip(a.gammas(), b.gammas()))
    from causalprune.errors import DataError

    with pytest.raises(DataError, match="non-finite"):
        b.update([block_features(blk, 0)[0] for blk in blocks], torch.tensor([float("nan")]))


def test_indexed_device_leaves_the_cpu_alone():
    assert indexed_device("cpu") == torch.device("cpu")
    assert indexed_device(torch.device("cpu")) == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# On a GPU


@contextlib.contextmanager
def no_sync():
    """Any CUDA host synchronisation inside the block raises."""
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


@cuda
@needs_cuda
def test_indexed_device_names_the_gpu():
    dev = indexed_device("cuda")
    assert dev.index is not None and dev == torch.zeros(1, device="cuda").device


@cuda
@needs_cuda
def test_solver_loops_do_not_sync():
    blocks, y = paper_blocks(device="cuda")
    order, etas, us = _plan(30)
    with no_sync():
        solve_torch(blocks, y, order, etas, us, 1e12)
    host_blocks, host_y = paper_blocks()
    y_dev = host_y.cuda()  # the caller's copy from pageable memory syncs; the solver's own loop must not
    with no_sync():
        solve_streamed(host_blocks, y_dev, order, etas, us, 1e12, torch.device("cuda"))
    online = OnlineLasso([b.dim for b in blocks], 2e-14, device="cuda")
    from causalprune.solvers.blocks import block_features

    xs = [[block_features(b, i)[0] for b in blocks] for i in range(5)]
    with no_sync():
        for i in range(5):
            online.update(xs[i], y[i])


@cuda
@needs_cuda
def test_recorder_step_does_not_sync(tiny_net):
    from causalprune.config import Config
    from causalprune.record.online import OnlineCausal

    net = tiny_net.cuda()
    rec = Recorder(net, ones_masks(net), lr=0.05, max_steps=8, dtype="bf16", device=torch.device("cuda"))
    on = OnlineCausal(net, ones_masks(net), Config(solver="online", l1_coeff=1e-7, lr_prune=0.05),
                      device=torch.device("cuda"))
    assert rec.device.index is not None
    loss = torch.ones((), device="cuda")
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1e-3)
        with no_sync():
            rec.after_step(loss)
            on.after_step(loss)


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_reference_solver_on_cuda_equals_the_cpu_in_the_papers_regime(dtype):
    """The residual rounds to −fl32(y) on both devices, so their different float64 dot
    products cannot show: γ is identical bit for bit."""
    blocks, y = paper_blocks(dtype=dtype)
    dev_blocks, dev_y = paper_blocks(dtype=dtype, device="cuda")
    cpu = solve_reference(blocks, y, 2e-14)
    gpu = solve_reference(dev_blocks, dev_y, 2e-14)
    assert all(g.device.type == "cuda" for g in gpu)
    assert any(bool((g != 0).any()) for g in cpu) and any(bool((g == 0).any()) for g in cpu)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))


def _same_trajectory(recs, net, steps=6):
    """Move the weights by the same deterministic amounts and hand every recorder each step."""
    g = torch.Generator().manual_seed(3)
    for t in range(steps):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 2.0**-10)
        for rec in recs:
            rec.after_step(torch.tensor(1.0 / (t + 1)))


@cuda
@needs_cuda
def test_recorder_and_a_spilled_recording_on_cuda_match_the_cpu(tiny_net, tmp_path):
    masks = ones_masks(tiny_net)
    lr = 2.0**-4  # dtheta / lr is then exact on any device
    cpu = Recorder(tiny_net, masks, lr=lr, max_steps=6, dtype="fp32")
    gpu = Recorder(tiny_net, masks, lr=lr, max_steps=6, dtype="fp32", device=torch.device("cuda"))
    spilled = Recorder(tiny_net, masks, lr=lr, max_steps=6, dtype="fp32", device=torch.device("cuda"),
                       budget_bytes=4 * 1024, spill_path=tmp_path / "rec.spill")
    assert spilled.spill is not None
    _same_trajectory([cpu, gpu, spilled], tiny_net)
    assert torch.equal(cpu.deltas(), gpu.deltas().cpu()) and torch.equal(cpu.deltas(), spilled.deltas())
    fits = []
    for rec in (cpu, gpu, spilled):
        feats = rec.features(momentum=False, granularity="weight")
        y = rec.targets().to(rec.device)
        fits.append([solve_reference(lf.blocks, y, 1e-9, generator=torch.Generator().manual_seed(0))[0]
                     for lf in feats])
    assert all(g.device.type == "cuda" for g in fits[2]), "the spilled recording was fitted on the GPU"
    for a, b, c in zip(*fits):
        assert torch.allclose(b.cpu(), a, rtol=1e-5, atol=1e-30) and torch.equal(b, c)


@cuda
@needs_cuda
def test_causal_pruner_on_cuda_matches_the_cpu(tiny_net):
    import copy

    import torch.nn.functional as F

    from causalprune import CausalPruner
    from causalprune.masks import sparsity

    results = []
    for device in ("cpu", "cuda"):
        net = copy.deepcopy(tiny_net).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        pruner = CausalPruner(net, opt, l1_coeff=1e-7)
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            x, y = torch.randn(16, 1, 6, 6, generator=g).to(device), torch.randint(0, 3, (16,), generator=g).to(device)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.step(loss)
        results.append(pruner.compute_masks())
    cpu, gpu = results
    agree = sum(int((cpu[k] == gpu[k].cpu()).sum()) for k in cpu) / sum(m.numel() for m in cpu.values())
    # GPU kernels round training differently, so the recordings (and a few decisions) may differ
    assert agree >= 0.95 and abs(sparsity(cpu) - sparsity(gpu)) <= 5.0


@cuda
@needs_cuda
def test_tiny_experiment_on_cuda_matches_the_cpu(quick_cfg):
    from causalprune.experiment import Experiment

    out = []
    for device in ("cpu", "cuda"):
        cfg = quick_cfg.replace(n_pre=1, n_iter=1, n_prune=1, n_post=1, max_steps_per_epoch=8, device=device,
                                out=f"{quick_cfg.out}/{device}")
        out.append(Experiment(cfg, log=lambda m: None).run())
    cpu, gpu = out
    # GPU kernels round training differently: the same protocol, not the same bits
    assert abs(cpu["percent_pruned"] - gpu["percent_pruned"]) <= 5.0
    assert abs(cpu["test_accuracy"] - gpu["test_accuracy"]) <= 10.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_torch_path_equals_the_numba_kernels_in_the_papers_regime(dtype):
    """What the CUDA parity below rests on: where the residual is exactly −fl32(y), the torch
    path's element-wise arithmetic is the numba kernels', bit for bit (here on the CPU)."""
    blocks, y = paper_blocks(dtype=dtype)
    a = solve_reference(blocks, y, 2e-14, backend="torch")
    b = solve_reference(blocks, y, 2e-14)
    assert any(bool((g != 0).any()) for g in b) and any(bool((g == 0).any()) for g in b)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
