"""Work done once and shared: the pretraining stage (pretrain.py) and iteration 1's epochs and
recording (shared.py). Sharing must never change a result: every run ends bit for bit where a run
that did all the work itself ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from causalprune.experiment import Experiment
from causalprune.masks import read_masks
from causalprune.paths import RunPaths
from causalprune.pretrain import stage_paths
from causalprune.shared import SharedEpochs
from causalprune.storage import load_checkpoint, read_json
from causalprune.sweep import BASELINES, SweepSpec, run_sweep

from .conftest import without_keys
from .harness import MARKER, process_env

HARNESS = str(Path(__file__).with_name("harness.py"))
TIMINGS = {"wall_seconds", "record_seconds", "lasso_seconds", "environment", "run_name", "shared_epochs"}

def _quiet(msg: str) -> None:
    pass

def _same_masks(a: Path, b: Path) -> None:
    ma, mb = read_masks(RunPaths(a).final_masks), read_masks(RunPaths(b).final_masks)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), f"{k} differs between {a.name} and {b.name}"

def _same_run(a: Path, b: Path) -> None:
    _same_masks(a, b)
    for ck in ("pretrained", "best"):
        sa = load_checkpoint(getattr(RunPaths(a), ck))["model"]
        sb = load_checkpoint(getattr(RunPaths(b), ck))["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{ck}.pt differs"
    assert without_keys(read_json(RunPaths(a).summary), TIMINGS) == without_keys(read_json(RunPaths(b).summary), TIMINGS)
    assert RunPaths(a).metrics.read_text() == RunPaths(b).metrics.read_text()

def test_a_run_that_reuses_the_pretraining_ends_where_a_run_that_pretrained_ends(quick_cfg):
    own = quick_cfg.replace(share_pretraining=False, name="own")
    first, second = quick_cfg.replace(name="first"), quick_cfg.replace(name="second")
    for cfg in (own, first, second):
        Experiment(cfg, log=_quiet).run()
    stage = stage_paths(first, torch.device("cpu"))
    assert read_json(stage.state)["pretrain_done"]
    assert read_json(RunPaths(first.run_dir()).state)["pretrained_from"] == os.path.relpath(stage.root, first.run_dir())
    assert "pretrained_from" not in read_json(RunPaths(own.run_dir()).state)
    _same_run(own.run_dir(), first.run_dir())
    _same_run(own.run_dir(), second.run_dir())

def test_the_stage_key_holds_exactly_what_pretraining_depends_on(quick_cfg):
    cpu = torch.device("cpu")
    key = stage_paths(quick_cfg, cpu).root
    for same in (dict(method="magnitude"), dict(l1_coeff=3e-12), dict(n_iter=5), dict(n_prune=7), dict(lr_prune=0.5),
                 dict(target_sparsity=0.5), dict(n_post=9), dict(name="x"), dict(solver="exact")):
        assert stage_paths(quick_cfg.replace(**same), cpu).root == key, same
    for other in (dict(seed=1), dict(n_pre=3), dict(lr_train=1e-3), dict(batch_size=32), dict(val_frac=0.2),
                  dict(max_steps_per_epoch=5), dict(model="lenet"), dict(pipeline="workers")):
        assert stage_paths(quick_cfg.replace(**other), cpu).root != key, other
    assert stage_paths(quick_cfg, torch.device("cuda")).root != key

def test_a_stage_folder_that_is_not_ours_is_refused_untouched(quick_cfg):
    from causalprune.errors import ConfigError

    stage = stage_paths(quick_cfg, torch.device("cpu"))
    stage.root.mkdir(parents=True)
    (stage.root / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not the pretraining stage"):
        Experiment(quick_cfg, log=_quiet).run()
    assert sorted(p.name for p in stage.root.iterdir() if p.name != ".lock") == ["notes.txt"]

def test_a_second_run_waits_for_the_stage_and_a_killed_stage_is_resumed_not_reused(quick_cfg, tmp_path):
    """Run A is paused inside the shared pretraining; run B (another method) must wait, not reuse the
    unfinished stage. A is SIGKILLed; B then resumes the stage and ends as an unshared run does."""
    out = Path(quick_cfg.out)
    flags = ["--preset", "quick", "--device", "cpu", "--out", str(out)]
    a = subprocess.Popen([sys.executable, HARNESS, "run", *flags, "--method", "magnitude", "--name", "a"],
                         env=process_env("pretrain:2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = None
    try:
        for line in a.stderr:
            if line.startswith(MARKER):
                break
        else:
            pytest.fail("run A never paused in pretraining")
        b = subprocess.Popen([sys.executable, HARNESS, "run", *flags, "--method", "causal", "--name", "b"],
                             env=process_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)  # plenty for B to start and reach the stage's lock
        assert b.poll() is None, "run B did not wait for the stage: " + b.communicate()[1][-2000:]
        assert not RunPaths(out / "b").pretrained.exists()
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=60)
        stdout, stderr = b.communicate(timeout=300)
        assert b.returncode == 0, stderr[-3000:]
        assert "pretraining into the shared stage" in stdout  # B finished the stage A left unfinished
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    own = quick_cfg.replace(method="causal", share_pretraining=False, name="own")
    Experiment(own, log=_quiet).run()
    _same_masks(own.run_dir(), out / "b")
    sa, sb = (load_checkpoint(RunPaths(p).pretrained)["model"] for p in (own.run_dir(), out / "b"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

def test_record_once_solve_many_gives_the_masks_of_separate_runs(quick_cfg, tmp_path):
    """A one-seed sweep with every baseline shares iteration 1's epochs and recording; each run's
    masks equal those of the same run made alone, with no sharing of any kind."""
    spec = SweepSpec(l1_grid=(1e-12, 4e-12), seeds=(0,), baselines=BASELINES)
    rows, _ = run_sweep(quick_cfg, spec)
    # 1 unpruned + per L1_coeff: causal, magnitude, the two layer-matched, causal-budget and
    # magnitude at causal-budget's sparsity
    assert len(rows) == 1 + 2 * 6 and all(r["status"] == "ok" for r in rows)
    alone = tmp_path / "alone"
    shared_seen = 0
    for r in rows:
        cfg_values = read_json(RunPaths(r["run_dir"]).config)
        from causalprune.config import config_from_dict

        cfg = config_from_dict(cfg_values).replace(out=str(alone), share_pretraining=False, name="")
        Experiment(cfg, log=_quiet).run()
        _same_masks(cfg.run_dir(), Path(r["run_dir"]))
        first = read_json(RunPaths(r["run_dir"]).summary)["iterations"]
        shared_seen += bool(first and first[0].get("shared_epochs"))
    # every pruning run but the first trained and recorded nothing in iteration 1
    assert shared_seen == len(rows) - 2

def test_shared_epochs_are_keyed_by_what_the_epochs_depend_on(quick_cfg):
    cpu = torch.device("cpu")
    key = SharedEpochs.key(quick_cfg, cpu)
    assert SharedEpochs.key(quick_cfg.replace(method="magnitude", l1_coeff=1e-9, n_iter=7, solver="exact"), cpu) == key
    for other in (dict(lr_prune=0.5), dict(n_prune=3), dict(momentum=0.9), dict(record_dtype="fp32"),
                  dict(loss_samples=8), dict(seed=2), dict(n_pre=1)):
        assert SharedEpochs.key(quick_cfg.replace(**other), cpu) != key, other
