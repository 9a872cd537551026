"""Golden outputs: the package's results, pinned bit for bit before its layout was restructured.

Every case goes through a stable public entry point (``Experiment(cfg).run()``, the
``CausalPruner`` loop of the README, ``torchrun -m causalprune run``) and compares what it
writes with ``tests/golden/``: masks and gamma exactly, and every figure of ``summary.json``
except wall-clock times. A change of layout must leave all of them equal; a deliberate change
of behaviour must regenerate them on purpose:

    CAUSALPRUNE_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from causalprune.config import Config, config_from_dict
from causalprune.paths import RunPaths
from causalprune.presets import preset_values
from causalprune.storage import load_tensors, read_json

from .conftest import without_keys

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("CAUSALPRUNE_WRITE_GOLDEN") == "1"
# Wall-clock figures differ from run to run, and the environment (torch, CPU) from machine to machine;
# everything else in summary.json must not.
TIMING = {"wall_seconds", "record_seconds", "lasso_seconds", "environment"}

# The quick protocol on scikit-learn's digits, once per method, solver, granularity and scope.
CASES: dict[str, dict] = {
    "causal-reference": {},
    "causal-exact": {"solver": "exact", "l1_coeff": 1e-13, "allow_empty_layers": True},
    "causal-online": {"solver": "online"},
    "causal-filter": {"granularity": "filter", "l1_coeff": 1e-10},
    "causal-network": {"scope": "network"},
    "causal-momentum": {"momentum": 0.9},
    "magnitude": {"method": "magnitude"},
    "random": {"method": "random"},
}
LAYER_MATCHED = "magnitude-layer-matched"  # magnitude pruned to causal-reference's per-layer counts


def _cfg(out: Path, extra: dict) -> Config:
    values = {**preset_values("quick"), "device": "cpu", "out": str(out), **extra}
    return config_from_dict(values, Config())


def _tensors(paths: RunPaths, n_iter: int) -> dict[str, torch.Tensor]:
    """Every iteration's masks and gammas, and the final masks, as one flat dict."""
    out = {}
    for it in range(1, n_iter + 1):
        out.update({f"masks/{it}/{k}": v for k, v in load_tensors(paths.masks(it)).items()})
        if paths.gammas(it).exists():
            out.update({f"gammas/{it}/{k}": v for k, v in load_tensors(paths.gammas(it)).items()})
    out.update({f"masks/final/{k}": v for k, v in load_tensors(paths.final_masks).items()})
    return out


def _fingerprint(t: torch.Tensor) -> dict:
    """A tensor's exact identity (dtype, shape, SHA-256 of its bytes) and its nonzero count, which
    says how far a differing mask is off."""
    t = t.detach().cpu().contiguous()
    raw = t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
    return {"dtype": str(t.dtype), "shape": list(t.shape), "nonzero": int(t.count_nonzero()),
            "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest()}


def _check(name: str, tensors: dict[str, torch.Tensor], figures) -> None:
    """Compare with (or, when writing, store as) the golden file of case ``name``."""
    got = {"tensors": {k: _fingerprint(v) for k, v in sorted(tensors.items())},
           "figures": json.loads(json.dumps(figures))}
    path = GOLDEN / f"{name}.json"
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    want = json.loads(path.read_text())
    assert sorted(got["tensors"]) == sorted(want["tensors"]), f"{name}: different tensors than the golden run"
    for k, v in want["tensors"].items():
        assert got["tensors"][k] == v, f"{name}: {k} differs from the golden run: {got['tensors'][k]} vs {v}"
    assert got["figures"] == want["figures"], f"{name}: summary figures differ from the golden run"


def _run(out: Path, extra: dict) -> RunPaths:
    from causalprune.experiment import Experiment

    exp = Experiment(_cfg(out, extra), log=lambda m: None)
    exp.run()
    return exp.paths


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("golden")


@pytest.mark.parametrize("name", list(CASES))
def test_quick_run_matches_golden(root, name):
    paths = _run(root, CASES[name])
    n_iter = preset_values("quick")["n_iter"]
    _check(name, _tensors(paths, n_iter), without_keys(read_json(paths.summary), TIMING))


def test_layer_matched_magnitude_matches_golden(root):
    ref = _run(root, CASES["causal-reference"])  # reused when the reference case ran first
    paths = _run(root, {"method": "magnitude", "match_layers": str(ref.root)})
    summary = without_keys(read_json(paths.summary), TIMING)
    summary.pop("run_name")  # hashes the reference run's folder, which is a temporary path
    _check(LAYER_MATCHED, _tensors(paths, preset_values("quick")["n_iter"]), summary)


def test_causal_pruner_readme_loop_matches_golden():
    """The README's loop on digits: record one phase, fit, apply; then ``causal_gammas``."""
    from causalprune import CausalPruner
    from causalprune.data import load_data
    from causalprune.models import build_model
    from causalprune.prune import causal_gammas

    torch.manual_seed(0)
    data = load_data("digits", model="mlp", batch_size=64, seed=0)
    model = build_model("mlp", data.spec)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    pruner = CausalPruner(model, opt, l1_coeff=1e-12)
    for epoch in range(2):
        for x, y in data.train.epoch(epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.step(loss)
    gammas = causal_gammas(pruner)
    masks = pruner.compute_masks()
    pruner.apply(masks)
    tensors = {**{f"masks/{k}": v for k, v in masks.items()}, **{f"gammas/{k}": v for k, v in gammas.items()}}
    kept = {k: int(v.sum()) for k, v in masks.items()}
    assert 0 < sum(kept.values()) < sum(v.numel() for v in masks.values()), "the case must prune something"
    _check("causal-pruner", tensors, {"kept": kept, "steps": pruner.steps})


@pytest.mark.skipif(not sys.platform.startswith("linux") or not torch.distributed.is_gloo_available(),
                    reason="needs Linux and torch.distributed with gloo")
def test_two_rank_ddp_masks_match_golden(root):
    settings = {"n_pre": 1, "n_iter": 2, "n_prune": 1, "n_post": 2}
    out = root / "ddp"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "causalprune", "run", "--preset", "quick", "--device", "cpu", f"--out={out}", *flags]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    paths = RunPaths(_cfg(out, {**settings}).run_dir())
    summary = without_keys(read_json(paths.summary), TIMING)
    _check("ddp-2-ranks", _tensors(paths, 2), {k: summary[k] for k in ("percent_pruned", "per_layer")})
