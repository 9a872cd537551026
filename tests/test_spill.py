"""Memory-bounded recording (spill.py) and the allocation-free recorder step (issue 5).

Invariants: a recording spilled to disk is bit for bit the in-memory one and gives the same
masks; the file is written in whole chunks, one file per iteration, and is gone after the Lasso;
the recorder holds 2 B per step per live weight plus a fixed per-weight state.
"""

from __future__ import annotations

import errno

import pytest
import torch
import torch.nn.functional as F

from causalprune.config import Config
from causalprune.errors import RecordMemoryError
from causalprune.masks import apply_masks, ones_masks, weight_of
from causalprune.methods import causal_decision
from causalprune.models import prunable_layers
from causalprune.record import spill as spill_mod
from causalprune.record.recorder import Recorder
from causalprune.record.spill import SpillFile, chunk_rows


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 1, 6, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(n)]


def _live_flat(model, masks):
    parts = [weight_of(m).detach().reshape(-1)[masks[f"{n}.weight"].reshape(-1).bool()]
             for n, m in prunable_layers(model).items()]
    return torch.cat(parts).clone()


def _train(model, rec, n, lr, snapshots=None, masks=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in _batches(n):
        if snapshots is not None:
            snapshots.append(_live_flat(model, masks))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.after_step(loss)
    if snapshots is not None:
        snapshots.append(_live_flat(model, masks))


def _half_masks(model):
    masks = ones_masks(model)
    masks["conv.weight"].view(-1)[::2] = 0  # a pruned layer (gathered) next to an unpruned one
    return masks


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_rows_are_exactly_the_cast_fp32_delta(tiny_net, dtype):
    """after_step's in-place arithmetic gives the bits of ((theta_{t+1} - theta_t) / lr).to(dtype)."""
    masks = _half_masks(tiny_net)
    apply_masks(tiny_net, masks)
    lr = 0.05
    rec = Recorder(tiny_net, masks, lr=lr, max_steps=6, dtype=dtype)
    snaps: list[torch.Tensor] = []
    _train(tiny_net, rec, 6, lr, snaps, masks)
    store = torch.bfloat16 if dtype == "bf16" else torch.float32
    for t in range(6):
        want = ((snaps[t + 1] - snaps[t]) / lr).to(store)
        got = rec.deltas()[t]
        assert torch.equal(got.view(torch.int16 if dtype == "bf16" else torch.int32),
                           want.view(torch.int16 if dtype == "bf16" else torch.int32)), t


def test_spilled_recording_equals_memory_and_gives_same_masks(tiny_net, tmp_path):
    masks = _half_masks(tiny_net)
    apply_masks(tiny_net, masks)
    state = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    lr, steps = 0.05, 45
    mem = Recorder(tiny_net, masks, lr=lr, max_steps=steps)
    _train(tiny_net, mem, steps, lr)
    tiny_net.load_state_dict(state)
    row = mem.width * 2
    path = tmp_path / "rec" / "iter_01.spill"
    # 40 rows' worth of budget: the 45 rows do not fit, and a chunk holds 40 / 8 = 5 rows.
    disk = Recorder(tiny_net, masks, lr=lr, max_steps=steps, budget_bytes=40 * row, spill_path=path)
    assert disk.spill is not None and disk.spill.rows_per_chunk == 5
    assert disk.held_bytes() < mem.held_bytes()
    _train(tiny_net, disk, steps, lr)
    assert "spilled to" in disk.describe() and str(path) in disk.describe()
    D = disk.deltas()
    assert D.shape == (steps, mem.width) and D.dtype == torch.bfloat16
    assert torch.equal(D.view(torch.int16), mem.deltas().view(torch.int16))
    assert torch.equal(disk.targets(), mem.targets())
    cfg = Config(l1_coeff=3e-7, lasso_lr0=1e-2)
    keep_mem, _ = causal_decision(mem, cfg, torch.Generator().manual_seed(3))
    keep_disk, _ = causal_decision(disk, cfg, torch.Generator().manual_seed(3))
    kept = sum(int(k.sum()) for k in keep_mem.values())
    assert 0 < kept < sum(k.numel() for k in keep_mem.values()), "a mixed decision, so equality means something"
    assert all(torch.equal(keep_mem[k], keep_disk[k]) for k in keep_mem)
    assert path.exists()
    disk.free()
    assert not path.exists() and not path.parent.exists()


def test_spill_writes_whole_chunks_to_one_file(tmp_path, monkeypatch):
    writes: list[int] = []
    sf = SpillFile(tmp_path / "x.spill", 7, torch.float32, rows_per_chunk=4, expected_rows=10)
    real_write = sf._fh.write
    monkeypatch.setattr(sf._fh, "write", lambda a: writes.append(a.shape[0]) or real_write(a), raising=False)
    rows = torch.arange(70, dtype=torch.float32).reshape(10, 7)
    for r in rows:
        sf.next_row().copy_(r)
        sf.commit_row()
    M = sf.finish()
    assert writes == [4, 4, 2], "rows go out in whole chunks, the last one partial"
    assert list(tmp_path.iterdir()) == [tmp_path / "x.spill"]
    assert torch.equal(M, rows) and sf.file_bytes() == 10 * 7 * 4
    sf.delete()
    assert not (tmp_path / "x.spill").exists()


def test_unreferenced_spill_file_is_removed(tmp_path):
    import gc

    sf = SpillFile(tmp_path / "y.spill", 3, torch.bfloat16, rows_per_chunk=2, expected_rows=2)
    sf.next_row().fill_(1.0)
    sf.commit_row()
    del sf
    gc.collect()
    assert not (tmp_path / "y.spill").exists()


def test_not_enough_disk_or_budget_says_what_to_do(tiny_net, tmp_path, monkeypatch):
    masks = ones_masks(tiny_net)
    monkeypatch.setattr(spill_mod, "disk_free_bytes", lambda p: 10)
    with pytest.raises(RecordMemoryError, match="--solver online"):
        Recorder(tiny_net, masks, lr=0.1, max_steps=1000, budget_bytes=10_000, spill_path=tmp_path / "a.spill")
    monkeypatch.undo()
    with pytest.raises(RecordMemoryError, match="--record-budget"):  # not even two rows fit
        Recorder(tiny_net, masks, lr=0.1, max_steps=1000, budget_bytes=100, spill_path=tmp_path / "a.spill")
    with pytest.raises(RecordMemoryError, match="--record-dtype bf16"):  # no spill file offered
        Recorder(tiny_net, masks, lr=0.1, max_steps=10**6, budget_bytes=10_000)


def test_failed_write_is_a_record_memory_error(tiny_net, tmp_path, monkeypatch):
    masks = ones_masks(tiny_net)
    rec = Recorder(tiny_net, masks, lr=0.1, max_steps=50, budget_bytes=4000, spill_path=tmp_path / "b.spill")

    def full(_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rec.spill._fh, "write", full, raising=False)
    with pytest.raises(RecordMemoryError, match="No space left"):
        _train(tiny_net, rec, 8, 0.1)
        rec.deltas()
    rec.free()
    assert not (tmp_path / "b.spill").exists()


def test_memory_is_two_bytes_per_step_per_live_weight(tiny_net):
    masks = _half_masks(tiny_net)
    T = 64
    rec = Recorder(tiny_net, masks, lr=0.1, max_steps=T, dtype="bf16")
    D = rec.width
    assert D == sum(int(m.sum()) for m in masks.values())  # only unpruned weights are recorded
    assert rec.held_bytes() == T * D * 2 + T * 8
    n_idx = int(masks["conv.weight"].sum())
    # fixed state, not per step: theta_t (fp32), the gather scratch and int64 indices of the pruned layer
    assert rec.peak_bytes() == rec.held_bytes() + 4 * D + 4 * n_idx + 8 * n_idx
    assert chunk_rows(1000, 2, 10**9) * 2000 <= spill_mod.CHUNK_BYTES


def test_experiment_spills_over_budget_and_keeps_the_masks(quick_cfg, tmp_path):
    from causalprune.data import load_data
    from causalprune.experiment import Experiment
    from causalprune.masks import read_masks
    from causalprune.models import build_model
    from causalprune.paths import RunPaths

    cfg = quick_cfg.replace(n_iter=1, n_post=1, n_pre=1)
    data = load_data(cfg.dataset, model=cfg.model, batch_size=cfg.batch_size, seed=cfg.seed, val_frac=cfg.val_frac)
    width = sum(weight_of(m).numel() for m in prunable_layers(build_model(cfg.model, data.spec)).values())
    need = Recorder.bytes_needed(cfg.n_prune * len(data.train), width, cfg.record_dtype)
    ref = Experiment(cfg, log=lambda m: None).run()
    logs: list[str] = []
    spilled_cfg = cfg.replace(out=str(tmp_path / "spilled"), record_budget=str(need // 3))
    out = Experiment(spilled_cfg, log=logs.append).run()
    assert any("spilled to" in line for line in logs), logs
    assert 0 < out["percent_pruned"] == ref["percent_pruned"] < 100
    a, b = read_masks(RunPaths(cfg.run_dir()).final_masks), read_masks(RunPaths(spilled_cfg.run_dir()).final_masks)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "spilled").rglob("*.spill")), "the spill file is deleted after the Lasso"


def test_map_survives_the_file_being_removed_while_recording(tmp_path):
    """A cleaned-up folder (e.g. `make clean`) must not break the Lasso: the map uses the open file."""
    sf = SpillFile(tmp_path / "z.spill", 5, torch.bfloat16, rows_per_chunk=2, expected_rows=5)
    rows = torch.randn(5, 5).to(torch.bfloat16)
    for r in rows:
        sf.next_row().copy_(r)
        sf.commit_row()
    (tmp_path / "z.spill").unlink()
    M = sf.finish()
    assert torch.equal(M.view(torch.int16), rows.view(torch.int16))
    sf.delete()
