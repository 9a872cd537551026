import json

import pytest

from causalprune.config import Config, config_from_dict, diff_configs, load_config_file
from causalprune.errors import ConfigError
from causalprune.experiment import check_config
from causalprune.presets import TABLE3, preset_values


def test_defaults_are_the_papers_protocol():
    c = Config().validate()
    assert (c.n_pre, c.n_iter, c.n_prune, c.n_post) == (10, 10, 10, 200)
    assert (c.lr_train, c.lr_prune, c.batch_size, c.patience, c.min_delta) == (5e-4, 1e-3, 512, 5, 1e-4)
    assert (c.lasso_lr0, c.lasso_power_t, c.lasso_epochs) == (1e-2, 0.25, 3)


@pytest.mark.parametrize("bad", [dict(n_pre=-1), dict(n_post=-3), dict(l1_coeff=0.0), dict(l1_coeff=-1e-14),
                                 dict(batch_size=0), dict(mag_prune_frac=1.0), dict(target_sparsity=1.2),
                                 dict(momentum=1.0), dict(val_frac=0.0), dict(method="foo"),
                                 dict(model="nope"), dict(dataset="nope"), dict(lr_prune=float("nan")),
                                 dict(loss_samples=-1), dict(loss_samples=513)])
def test_out_of_range_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        check_config(Config(**bad))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match="lenet"):
        check_config(Config(model="vgg99"))


def test_run_name_readable_unique_and_stable():
    a, b = Config(), Config(l1_coeff=1e-12)
    assert a.run_name().startswith("causal-lenet-fashion-mnist-s0-")
    assert a.run_name() != b.run_name()
    assert a.run_name() == Config().run_name()
    # runtime settings do not change the name
    assert a.run_name() == Config(out="elsewhere", device="cpu", data_dir="/x").run_name()


def test_target_sparsity_sets_the_fraction():
    c = Config(target_sparsity=0.6513, n_iter=10)
    assert abs(c.prune_fraction() - 0.1) < 1e-3


def test_config_from_dict_and_files(tmp_path):
    c = config_from_dict({"n-pre": "3", "l1_coeff": 1e-12, "allow_empty_layers": "true"})
    assert (c.n_pre, c.l1_coeff, c.allow_empty_layers) == (3, 1e-12, True)
    with pytest.raises(ConfigError, match="unknown setting"):
        config_from_dict({"n_pree": 3})
    with pytest.raises(ConfigError, match="must be a int"):
        config_from_dict({"n_pre": 2.5})
    (tmp_path / "c.yaml").write_text("n_iter: 4\nmethod: magnitude\n")
    assert load_config_file(tmp_path / "c.yaml") == {"n_iter": 4, "method": "magnitude"}
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(tmp_path / "c.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(tmp_path / "bad.json")


def test_diff_configs_lists_changed_keys():
    saved = json.loads(json.dumps(Config().to_dict()))
    assert diff_configs(saved, Config()) == []
    assert diff_configs(saved, Config(n_iter=3, out="x")) == ["n_iter"]
    del saved["momentum"]  # an older config.json without a newer field means its default
    assert diff_configs(saved, Config()) == []


def test_paper_preset_picks_table3_cells():
    for (model, dataset), (l1, frac) in TABLE3.items():
        v = preset_values("paper", model, dataset)
        assert (v["l1_coeff"], v["mag_prune_frac"]) == (l1, frac)
        assert v["n_pre"] == v["n_iter"] == v["n_prune"] == 10 and v["n_post"] == 200
    assert preset_values("paper", "resnet50", "imagenet")["batch_size"] == 256
    with pytest.raises(ConfigError, match="valid presets"):
        preset_values("fast")
