"""--tensorboard: scalars mirror metrics.csv, per-layer sparsity and |gamma| histograms per iteration;
a missing tensorboard package is a one-line ConfigError."""

from __future__ import annotations

import csv
import sys

import pytest
import torch

from causalprune.errors import ConfigError
from causalprune.masks import layer_sparsity, read_masks
from causalprune.storage import load_tensors


def _cfg(tmp_path, **kw):
    from causalprune.config import Config, config_from_dict
    from causalprune.presets import preset_values

    return config_from_dict({**preset_values("quick"), "n_pre": 1, "n_iter": 2, "n_prune": 1, "n_post": 1,
                             "device": "cpu", "out": str(tmp_path), **kw}, Config())


def test_missing_tensorboard_is_a_config_error(tmp_path, monkeypatch):
    from causalprune.experiment import Experiment

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError, match=r"causalprune\[tensorboard\]"):
        Experiment(_cfg(tmp_path, tensorboard=True), log=lambda m: None)
    assert not any(tmp_path.iterdir()), "nothing may be written before the error"


def test_scalars_and_gamma_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from causalprune.experiment import Experiment

    exp = Experiment(_cfg(tmp_path, tensorboard=True), log=lambda m: None)
    exp.run()
    acc = EventAccumulator(str(exp.paths.tensorboard), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    with open(exp.paths.metrics, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:  # every metrics row is a scalar with the same value
        events = acc.Scalars(f"{r['phase']}/{r['name']}")
        assert any(e.value == pytest.approx(float(r["value"]), rel=1e-6) for e in events), r
    assert {"post/val_accuracy", "final/test_accuracy", "prune/percent_pruned"} <= set(tags["scalars"])
    for it in (1, 2):
        masks = read_masks(exp.paths.masks(it))
        gammas = load_tensors(exp.paths.gammas(it))
        for key, pct in layer_sparsity(masks).items():
            (event,) = [e for e in acc.Scalars(f"sparsity/{key}") if e.step == it]
            assert event.value == pytest.approx(pct, abs=1e-4)
            (hist,) = [h for h in acc.Histograms(f"gamma_abs/{key}") if h.step == it]
            assert hist.histogram_value.num == gammas[key].numel()
            assert hist.histogram_value.max == pytest.approx(float(gammas[key].abs().max()), rel=1e-5)
            nonzero = int((gammas[key] != 0).sum())
            if nonzero:
                (logh,) = [h for h in acc.Histograms(f"log10_gamma_abs/{key}") if h.step == it]
                assert logh.histogram_value.num == nonzero
    assert torch.equal(read_masks(exp.paths.masks(2))["fc1.weight"], read_masks(exp.paths.final_masks)["fc1.weight"])


def test_off_by_default_writes_no_event_files(tmp_path):
    from causalprune.experiment import Experiment

    exp = Experiment(_cfg(tmp_path), log=lambda m: None)
    exp.state.log("pre", 0, 1, 1, "train_loss", 1.0)
    exp.tb.iteration(1, {"fc1.weight": torch.ones(2, 2, dtype=torch.uint8)}, {"fc1.weight": torch.ones(4)})
    exp.tb.close()
    assert exp.tb.writer is None and not exp.paths.tensorboard.exists()
