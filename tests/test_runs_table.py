"""Every run writes layer_sparsity.csv; `causal-prune runs` rebuilds published tables from small files alone."""

from __future__ import annotations

import pytest
import torch

from causalprune.cli import main
from causalprune.experiment import Experiment
from causalprune.masks import read_masks
from causalprune.paths import RunPaths
from causalprune.results.layers import read_layer_sparsity
from causalprune.storage import read_json

ARTIFACTS = ("config.json", "summary.json", "metrics.csv", "layer_sparsity.csv")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    out = tmp_path_factory.mktemp("runs")
    cfg = config_from_dict(preset_values("quick"), Config()).replace(out=str(out), device="cpu", max_steps_per_epoch=6)
    Experiment(cfg, log=lambda m: None).run()
    return RunPaths(cfg.run_dir())


def test_layer_sparsity_csv_is_the_masks_of_every_iteration(run):
    rows = read_layer_sparsity(run.root)
    summary = read_json(run.summary)
    for it, info in enumerate(summary["iterations"], 1):
        masks = read_masks(run.masks(it))
        for layer, m in masks.items():
            (row,) = [r for r in rows if r["iteration"] == it and r["layer"] == layer]
            assert row["weights"] == m.numel() and row["kept"] == int(m.sum())
        (total,) = [r for r in rows if r["iteration"] == it and r["layer"] == "all"]
        assert total["percent_pruned"] == pytest.approx(info["percent_pruned"], abs=1e-6)
    assert [r["iteration"] for r in rows if r["layer"] == "all"] == list(range(1, len(summary["iterations"]) + 1))


def test_runs_command_gives_the_same_tables_from_the_published_artifacts_alone(run, tmp_path, capsys):
    assert main(["runs", str(run.root), "--layers"]) == 0
    full = capsys.readouterr().out
    assert main(["runs", str(run.root), "--publish", str(tmp_path / "pub")]) == 0
    capsys.readouterr()
    small = tmp_path / "pub" / run.root.name
    published = {p.name for p in small.iterdir()}
    assert set(ARTIFACTS) <= published <= set(ARTIFACTS) | {"pruned_channels.json", "shrunk.json"}
    for f in small.iterdir():
        assert str(run.root.parent) not in f.read_text(), f"{f.name} carries the machine's path"
    assert main(["runs", str(small), "--layers"]) == 0
    assert capsys.readouterr().out.replace(str(small), str(run.root)) == full
    summary = read_json(run.summary)
    assert f"{summary['percent_pruned']:.2f}" in full and f"{summary['test_accuracy']:.2f}" in full
    assert "| iteration |" in full and "fc1.weight" in full
    env = summary["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] >= 1 and env["cpu_capability"]
