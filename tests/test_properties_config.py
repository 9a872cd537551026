"""Property tests (hypothesis) for the configuration loader and for the pruning decision.

Configuration: whatever a JSON or YAML file holds -- valid keys with values of any type, unknown
keys, non-mappings, random text -- loading it gives a valid Config or a one-line ConfigError,
never another exception; and a valid Config survives its own config.json round trip (the resume
check compares against it).

Decision (the solver's own properties -- no NaN, all-zero columns stay exactly 0, larger l1 never
more nonzeros -- are in test_solver_properties.py): through the whole recorder -> features ->
Lasso -> expand_keep -> combine path, masks only shrink, gammas are finite, and a weight whose
recorded updates are all zero is always pruned.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from causalprune.config import CHOICES, Config, config_from_dict, diff_configs, load_config_file
from causalprune.errors import ConfigError

FIELDS = {f.name: f for f in fields(Config)}
NAMES = sorted(FIELDS)

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),  # JSON and YAML both carry big integers
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _plausible(name: str):
    """Values near the valid range of one setting, so that many drawn configs are valid."""
    typ = FIELDS[name].type
    if name in CHOICES:
        return st.sampled_from(CHOICES[name]) | st.text(max_size=8)
    if typ == "int":
        return st.integers(-3, 40) | st.floats(-3, 40) | st.sampled_from(["3", "x", "1e3"])
    if typ == "float":
        return st.floats(-2, 2) | st.sampled_from([0.0, 1e-14, 1e-3, float("nan"), float("inf"), "0.5", "1e-3"])
    if typ == "bool":
        return st.booleans() | st.sampled_from(["yes", "off", "maybe", 0, 1, 2])
    return st.text(max_size=10)


# Three kinds of file: known keys with wild values; a few keys with values near their valid range
# (so that many drawn files are valid and the round trip is exercised); unknown keys.
near_valid = st.lists(st.sampled_from(NAMES), max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: _plausible(k) for k in keys}))
mappings = st.dictionaries(st.sampled_from(NAMES), values, max_size=6) | near_valid | st.dictionaries(
    st.text(max_size=8), values, max_size=3)


def _load(path) -> Config | None:
    """The CLI's path for --config: read the file, overlay on the defaults, validate."""
    try:
        return config_from_dict(load_config_file(path)).validate()
    except ConfigError as exc:
        assert "\n" not in str(exc), "errors are one line"
        return None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(mapping=mappings)
def test_json_mapping_gives_config_or_config_error(tmp_path, mapping):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(mapping))  # json.dumps writes NaN/Infinity, which json.loads reads back
    cfg = _load(f)
    if cfg is not None:
        _check_valid(cfg)


@SETTINGS
@given(mapping=mappings)
def test_yaml_mapping_gives_config_or_config_error(tmp_path, mapping):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(mapping, allow_unicode=True))
    cfg = _load(f)
    if cfg is not None:
        _check_valid(cfg)


@SETTINGS
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(
    ["a: 1", "n_pre: 2001-13-45", "seed: !!python/object:os.system", "- x", "{", "n_iter: [1", "? [a]: 1",
     "l1_coeff: .nan", "batch_size: 0x10", "momentum: 1e400", "dataset: null", "  bad indent", ":"]),
    max_size=4).map("\n".join))
def test_random_yaml_text_gives_config_or_config_error(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    _load(f)


def _check_valid(cfg: Config) -> None:
    """A Config the loader accepted is really in range and survives its own config.json."""
    for f in fields(Config):
        v = getattr(cfg, f.name)
        assert type(v).__name__ == f.type, (f.name, v)
        if f.type == "float":
            assert math.isfinite(v), (f.name, v)
    saved = json.loads(json.dumps(cfg.to_dict()))
    again = config_from_dict(saved).validate()
    assert again == cfg and diff_configs(saved, cfg) == []
    assert again.run_name() == cfg.run_name()


# -- the pruning decision ------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


@settings(max_examples=15, deadline=None)
@given(d_in=st.integers(1, 6), hidden=st.integers(1, 5), steps=st.integers(3, 12), iters=st.integers(1, 3),
       l1=st.sampled_from([1e-14, 1e-6, 1e-3, 1.0]), seed=st.integers(0, 2**16), momentum=st.booleans())
def test_decisions_only_shrink_and_frozen_weights_are_pruned(d_in, hidden, steps, iters, l1, seed, momentum):
    from causalprune.masks import apply_masks, combine, current_masks, ones_masks
    from causalprune.methods import causal_decision
    from causalprune.record.recorder import Recorder

    torch.manual_seed(seed)
    net = _Net(d_in, hidden)
    apply_masks(net, ones_masks(net))
    # Input feature 0 is always zero: the first column of fc1 never receives a gradient, so its
    # recorded updates are exactly 0 and eq. (9) can give it no causal effect.
    x = torch.randn(steps, 4, d_in)
    x[..., 0] = 0.0
    y = torch.randint(0, 3, (steps, 4))
    cfg = Config(l1_coeff=l1, lr_prune=0.1, momentum=0.5 if momentum else 0.0, lasso_epochs=2)
    masks = current_masks(net)
    for it in range(iters):
        rec = Recorder(net, masks, lr=cfg.lr_prune, max_steps=steps, dtype="fp32", device=torch.device("cpu"))
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr_prune, momentum=cfg.momentum)
        for t in range(steps):
            loss = nn.functional.cross_entropy(net(x[t]), y[t])
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.after_step(loss.detach())
        keep, gammas = causal_decision(rec, cfg, torch.Generator().manual_seed(seed + it))
        new = combine(masks, keep)
        for k in masks:
            assert keep[k].shape == masks[k].shape and keep[k].dtype == torch.uint8
            assert bool((new[k] <= masks[k]).all()), "a pruned weight came back"
            assert torch.isfinite(gammas[k]).all()
        assert not new["fc1.weight"][:, 0].any(), "a weight that never moved was kept"
        masks = new
        apply_masks(net, masks)
