"""The sweep: grid parsing, the plan of runs, reuse and failures, and the files it writes.

The orchestration tests replace the trainer with a fake whose result is a known function of the
settings (so they run in a second); the real trainer runs in the report tests' tiny sweep.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from causalprune.config import Config, config_from_dict
from causalprune.errors import ConfigError, EmptyLayerError
from causalprune.paths import RunPaths
from causalprune.presets import preset_values
from causalprune.results.sweep_files import phase_curves, phase_widths, read_sweep_rows, varied_params
from causalprune.storage import write_json
from causalprune.sweep import (
    BASELINES,
    SweepSpec,
    follower_configs,
    causal_configs,
    magnitude_targets,
    parse_grid,
    parse_ints,
    planned_count,
    seed_configs,
    run_sweep,
    sweep_dir,
)


@pytest.fixture
def base(tmp_path):
    cfg = config_from_dict(preset_values("quick"), Config())
    return cfg.replace(out=str(tmp_path / "runs"), device="cpu")


def test_log_grid_is_log_spaced_with_exact_ends():
    g = parse_grid("1e-16:1e-11:6", log=True)
    assert len(g) == 6 and g[0] == 1e-16 and g[-1] == 1e-11
    assert np.allclose(np.diff(np.log10(g)), 1.0)


def test_explicit_and_linear_grids():
    assert parse_grid("1e-12, 3e-12,1e-11", log=True) == (1e-12, 3e-12, 1e-11)
    assert parse_grid("0.2:0.8:4", log=False) == pytest.approx((0.2, 0.4, 0.6, 0.8))
    assert parse_ints("0,1,2", "--seeds") == (0, 1, 2)


@pytest.mark.parametrize("text,log", [("1e-12:abc:3", True), ("0:1e-11:3", True), ("1e-12:1e-11:0", True),
                                      ("x,y", False), ("1:2", False)])
def test_bad_grid_is_a_config_error_with_an_example(text, log):
    with pytest.raises(ConfigError, match="write it as"):
        parse_grid(text, log=log)


def test_spec_refuses_bad_values():
    with pytest.raises(ConfigError):
        SweepSpec(l1_grid=(1e-12,), sparsity_grid=(0.5, 1.0)).validate()
    with pytest.raises(ConfigError):
        SweepSpec(l1_grid=(), seeds=(0,)).validate()
    with pytest.raises(ConfigError):
        SweepSpec(l1_grid=(1e-12,), baselines=("best",)).validate()


def test_causal_plan_main_protocol_first_and_distinct(base):
    spec = SweepSpec(l1_grid=(1e-13, 1e-12), seeds=(0, 1), n_iter_grid=(2, 3), n_prune_grid=(1, 2))
    cfgs = causal_configs(base, spec)
    assert len(cfgs) == 2 * 2 * 4  # l1 x seeds x (n_iter, n_prune) protocols
    assert len({c.run_name() for c in cfgs}) == len(cfgs)
    assert all((c.n_iter, c.n_prune) == (2, 1) for c in cfgs[:4])  # the first values are the main protocol
    assert {(c.n_iter, c.n_prune) for c in cfgs} == {(2, 1), (2, 2), (3, 1), (3, 2)}
    assert all(c.method == "causal" for c in cfgs)


def test_sweep_dir_hash_follows_the_grid_not_the_order_of_calls(base):
    spec = SweepSpec(l1_grid=(1e-13, 1e-12))
    assert sweep_dir(base, spec) == sweep_dir(base, spec)
    assert sweep_dir(base, spec) != sweep_dir(base, SweepSpec(l1_grid=(1e-13, 1e-11)))
    assert sweep_dir(base, spec) != sweep_dir(base.replace(lr_prune=0.5), spec)
    assert sweep_dir(base, spec).parent == Path(base.out)


def _row(l1, seed, pp, status="ok", main=True, run_dir="x"):
    return {"curve": "causal", "l1_coeff": l1, "seed": seed, "percent_pruned": pp, "status": status,
            "main": main, "run_dir": run_dir}


def test_magnitude_targets_pair_each_causal_run_or_follow_the_grid():
    assert magnitude_targets(SweepSpec(l1_grid=(1e-12,)), _row(1e-12, 1, 22.345678)) == [0.2235]
    assert magnitude_targets(SweepSpec(l1_grid=(1e-12,)), _row(1e-12, 0, 100.0)) == [0.9999]
    assert magnitude_targets(SweepSpec(l1_grid=(1e-12,), sparsity_grid=(0.5, 0.2)), _row(1e-12, 0, 20.0)) == []


def test_followers_of_a_causal_run_share_its_seed_and_setting(base, tmp_path):
    row = _row(1e-12, 1, 25.0, run_dir=str(tmp_path / "a"))
    spec = SweepSpec(l1_grid=(1e-12, 1e-11), seeds=(0, 1), baselines=BASELINES)
    got = follower_configs(base, spec, row)
    assert [c for c, _ in got] == ["magnitude", "magnitude (layer-matched)", "random (layer-matched)",
                                   "causal-budget"]
    assert all(cfg.seed == 1 for _, cfg in got)
    mag, mm, rm, cb = (cfg for _, cfg in got)
    assert (mag.method, mag.target_sparsity, mag.match_layers) == ("magnitude", 0.25, "")
    for cfg, method in ((mm, "magnitude"), (rm, "random")):
        assert cfg.method == method and Path(cfg.match_layers) == (tmp_path / "a").resolve()
    assert (cb.method, cb.l1_coeff) == ("causal-budget", 1e-12)
    per_seed = seed_configs(base, SweepSpec(l1_grid=(1e-12,), sparsity_grid=(0.5, 0.2), baselines=BASELINES), 2)
    assert [(c, cfg.method, cfg.seed, cfg.target_sparsity) for c, cfg in per_seed] == \
        [("none", "none", 2, -1.0), ("magnitude", "magnitude", 2, 0.2), ("magnitude", "magnitude", 2, 0.5)]


def test_planned_count_matches_a_full_plan():
    spec = SweepSpec(l1_grid=(1e-13, 1e-12, 1e-11), seeds=(0, 1))
    assert planned_count(spec, 6) == 6 + 6 + 6 + 6
    every = SweepSpec(l1_grid=(1e-13, 1e-12, 1e-11), seeds=(0, 1), baselines=BASELINES)
    assert planned_count(every, 6) == 6 + 5 * 6 + 2  # magnitude-budget follows each causal-budget run
    no_budget = SweepSpec(l1_grid=(1e-13,), seeds=(0,), baselines=("magnitude (budget sparsity)",))
    assert planned_count(no_budget, 1) == 1  # without causal-budget it has nothing to follow
    with pytest.raises(ConfigError, match="add causal-budget"):
        no_budget.validate()
    grid = SweepSpec(l1_grid=(1e-13,), seeds=(0, 1), sparsity_grid=(0.1, 0.2, 0.2), baselines=("magnitude", "none"))
    assert planned_count(grid, 2) == 2 + 2 * (1 + 2)


# -- the orchestration, with a fake trainer ---------------------------------------------------------
def _fake_pp(cfg: Config) -> float:
    if cfg.method == "causal":
        return float(np.clip(20 * (math.log10(cfg.l1_coeff) + 14), 0, 95))  # 1e-13 -> 20 %, 1e-12 -> 40 %
    if cfg.match_layers:
        return json.loads(RunPaths(cfg.match_layers).summary.read_text())["percent_pruned"]
    return 100 * cfg.target_sparsity


class FakeExperiment:
    calls: list[str] = []

    def __init__(self, cfg, overwrite=False, log=print, shared=None):
        self.cfg = cfg

    def run(self):
        cfg, paths = self.cfg, RunPaths(self.cfg.run_dir())
        FakeExperiment.calls.append(cfg.run_name())
        if paths.summary.exists():
            return json.loads(paths.summary.read_text())
        if cfg.method == "causal" and cfg.l1_coeff >= 1e-11:
            raise EmptyLayerError("pruning would remove every weight of fc1.weight; use a smaller --l1-coeff")
        pp = _fake_pp(cfg)
        # accuracy: flat, then a cliff for causal; a ramp for the others
        acc = 90.0 - (40.0 if pp > 35 else 0.0) if cfg.method == "causal" else 90.0 - 0.8 * pp
        acc -= {"random": 5.0}.get(cfg.method, 0.0)
        write_json(paths.config, cfg.to_dict())
        summary = {"method": cfg.method, "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed,
                   "percent_pruned": pp, "test_accuracy": acc + 0.1 * cfg.seed, "per_layer": {}}
        write_json(paths.summary, summary)
        return summary


@pytest.fixture
def fake(monkeypatch):
    import causalprune.experiment

    FakeExperiment.calls = []
    monkeypatch.setattr(causalprune.experiment, "Experiment", FakeExperiment)
    return FakeExperiment


def test_sweep_runs_every_curve_writes_its_files_and_reuses(base, fake):
    spec = SweepSpec(l1_grid=(1e-14, 1e-13, 1e-12, 1e-11), seeds=(0, 1))
    rows, out = run_sweep(base, spec)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len([r for r in rows if r["curve"] == "causal"]) == 8
    assert [r["l1_coeff"] for r in rows if r["status"] != "ok"] == [1e-11, 1e-11]  # recorded, not fatal
    assert len([r for r in ok if r["curve"] == "magnitude"]) == 2 * 3  # one per finished causal run
    for r in ok:  # each global magnitude run sits at the sparsity of its own seed's causal run
        if r["curve"] == "magnitude":
            twin = next(c for c in ok if c["curve"] == "causal" and c["seed"] == r["seed"]
                        and round(c["percent_pruned"] / 100, 4) == r["target_sparsity"])
            assert r["percent_pruned"] == pytest.approx(twin["percent_pruned"], abs=0.01)
    assert len([r for r in ok if "layer-matched" in r["curve"]]) == 2 * 6
    for r in ok:  # each layer-matched run sits at its causal run's sparsity
        if r["match_layers"]:
            src = json.loads(RunPaths(r["match_layers"]).summary.read_text())
            assert r["percent_pruned"] == src["percent_pruned"] and r["seed"] == src["seed"]
    for name in ("sweep.csv", "sweep.json", "phase.png", "phase_width.json", "hparams.png", "failures.json"):
        assert (out / name).stat().st_size > 0, name
    assert read_sweep_rows(out)[0].keys() >= {"curve", "method", "seed", "l1_coeff", "target_sparsity",
                                               "percent_pruned", "test_accuracy", "run_dir"}
    widths = json.loads((out / "phase_width.json").read_text())["curves"]
    # the fake causal curve is a cliff (between 20 and 40 % pruned), magnitude a straight ramp over 0..40
    assert widths["causal"]["width_pp"] < widths["magnitude"]["width_pp"]
    assert widths["magnitude"]["width_pp"] == pytest.approx(0.8 * 40, rel=1e-6)

    n_first = len(fake.calls)
    rows2, out2 = run_sweep(base, spec)  # rerun: the failure is remembered, everything else reused
    assert out2 == out and all(r["reused"] for r in rows2)
    assert len(fake.calls) == 2 * n_first - 2  # the two failing runs are not retried
    run_sweep(base, spec, retry_failed=True)
    assert len(fake.calls) == 3 * n_first - 2


def test_sweep_csv_round_trips(base, fake):
    rows, out = run_sweep(base, SweepSpec(l1_grid=(1e-13, 1e-12), baselines=("magnitude",)))
    back = read_sweep_rows(out)
    assert [(r["curve"], r["seed"], r["percent_pruned"], r["test_accuracy"]) for r in back] == \
        [(r["curve"], r["seed"], r.get("percent_pruned"), r.get("test_accuracy")) for r in rows]
    assert all(isinstance(r["main"], bool) for r in back)
    with open(out / "sweep.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows) == 4


def test_phase_widths_same_definition_for_every_curve():
    xs = np.linspace(0, 90, 10)
    step = [(x, 90.0 if x < 45 else 10.0, 0) for x in xs]
    ramp = [(x, 90.0 - 0.8 * x, 0) for x in xs]
    flat = [(x, 90.0, 0) for x in xs]
    w = phase_widths({"causal": step, "magnitude": ramp, "random": flat})["curves"]
    assert w["causal"]["width_pp"] <= 10.0  # at most one grid spacing
    assert w["magnitude"]["width_pp"] == pytest.approx(0.8 * 90)
    assert w["random"]["width_pp"] is None  # no drop -> null, not NaN in JSON
    json.dumps(w, allow_nan=False)


def test_phase_curves_keep_only_finished_main_runs_and_varied_params():
    rows = [{"curve": "causal", "percent_pruned": 10.0, "test_accuracy": 90.0, "seed": 0, "main": True,
             "status": "ok", "n_iter": 2, "n_prune": 1, "l1_coeff": 1e-12},
            {"curve": "causal", "percent_pruned": 50.0, "test_accuracy": 80.0, "seed": 0, "main": False,
             "status": "ok", "n_iter": 3, "n_prune": 1, "l1_coeff": 1e-12},
            {"curve": "magnitude", "percent_pruned": None, "test_accuracy": None, "seed": 0, "main": True,
             "status": "failed: x", "n_iter": 2, "n_prune": 1, "l1_coeff": None}]
    assert phase_curves(rows) == {"causal": [(10.0, 90.0, 0)]}
    assert varied_params(rows) == ("n_iter",)


def test_cli_dry_run_lists_the_plan(capsys, tmp_path):
    from causalprune.cli import main

    code = main(["sweep", "--preset", "quick", "--out", str(tmp_path), "--l1-grid", "1e-13:1e-11:3",
                 "--seeds", "0,1", "--dry-run"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and len(plan["causal_runs"]) == 6 and plan["l1_grid"] == [1e-13, 1e-12, 1e-11]
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


def test_cli_bad_grid_is_one_line(capsys, tmp_path):
    from causalprune.cli import main

    code = main(["sweep", "--preset", "quick", "--out", str(tmp_path), "--l1-grid", "1e-13:oops:3"])
    err = capsys.readouterr().err
    assert code == 2 and "write it as" in err and len(err.strip().splitlines()) == 1


def test_sweep_folder_survives_moving_the_out_folder(base, fake, tmp_path):
    import shutil

    rows, out = run_sweep(base, SweepSpec(l1_grid=(1e-13, 1e-12)))
    moved = tmp_path / "elsewhere"
    shutil.move(base.out, moved)
    back = read_sweep_rows(moved / out.name)
    assert len(back) == len(rows) and all(Path(r["run_dir"]).parent == moved for r in back)
    assert all(Path(r["run_dir"]).is_dir() for r in back)
