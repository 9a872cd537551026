"""Every hyperparameter of a run, declared once.

Each field of :class:`Config` carries its type, default and help text. From them come the
``causal-prune run`` flags (``n_pre`` -> ``--n-pre``), the ``config.json`` of a run folder, the
run's name and the resume check. Names follow the paper's Table 1 where it has one.

A field's ``kind`` decides its role:

* ``"hp"``: changes the result. It is hashed into the run name and must match on resume.
* ``"runtime"``: where or how the run executes (paths, device, progress); not hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .units import parse_bytes

__all__ = ["Config", "CHOICES", "config_from_dict", "load_config_file", "diff_configs", "settings_digest"]

# Allowed values of the categorical settings, declared once (used by the CLI and validation).
CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("causal", "causal-budget", "magnitude", "random", "none"),
    "device": ("auto", "cpu", "cuda"),
    "solver": ("reference", "exact", "online"),
    "granularity": ("weight", "filter", "channel", "layer"),
    "scope": ("layer", "network"),
    "record_dtype": ("bf16", "fp32"),
    "pipeline": ("auto", "device", "workers"),
}


def settings_digest(settings: Any) -> str:
    """SHA-256 (hex) of a JSON-able mapping of settings, independent of key order: what names run
    folders, sweep folders, pretraining stages and shared epochs."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _f(default: Any, help: str, kind: str = "hp", **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "kind": kind, **extra})


@dataclass(frozen=True)
class Config:
    # --- what to run ---------------------------------------------------------------------
    model: str = _f("lenet", "model name (see `causal-prune models`)")
    dataset: str = _f("fashion-mnist", "data set name")
    method: str = _f("causal", "pruning method: causal | causal-budget | magnitude | random | none")
    seed: int = _f(0, "seed for initialisation, the validation split, batch order and the Lasso")
    # --- Algorithm 1 (paper Table 1) --------------------------------------------------------
    n_pre: int = _f(10, "N_pre: pretraining epochs with Adam before pruning")
    n_iter: int = _f(10, "N_iter: pruning iterations")
    n_prune: int = _f(10, "N_prune: SGD epochs recorded per pruning iteration")
    n_post: int = _f(200, "N_post: maximum post-training epochs (early stopping)")
    l1_coeff: float = _f(1e-14, "L1_coeff: Lasso penalty alpha of eq. (9)")
    # --- optimisation (paper Appendix C) ------------------------------------------------------
    batch_size: int = _f(512, "minibatch size (global, across all DDP ranks)")
    lr_train: float = _f(5e-4, "Adam learning rate for pre- and post-training")
    lr_prune: float = _f(1e-3, "SGD learning rate during the recorded pruning epochs")
    momentum: float = _f(0.0, "SGD momentum in the pruning epochs (>0 uses the Appendix A model, eqs. 15-19)")
    patience: int = _f(5, "post-training early stopping: epochs without improvement of the training loss")
    min_delta: float = _f(1e-4, "post-training early stopping: minimum improvement of the training loss")
    val_frac: float = _f(0.1, "fraction of the training data held out for validation/model selection")
    max_steps_per_epoch: int = _f(0, "cap on steps per epoch (0 = full epochs); for quick shortened protocols")
    # --- the Lasso (docs/method.md §2) ------------------------------------------------------------
    solver: str = _f("reference", "Lasso solver: reference (paper's SGD) | exact | online")
    lasso_lr0: float = _f(1e-2, "Lasso SGD initial step size eta_0")
    lasso_power_t: float = _f(0.25, "Lasso SGD step decay: eta_s = eta_0 / s^power_t")
    lasso_epochs: int = _f(3, "Lasso SGD passes over the recorded samples")
    granularity: str = _f("weight", "what one gamma covers: weight | filter | channel | layer")
    scope: str = _f("layer", "one Lasso per layer, or one over the whole network (paper §5 iii)")
    record_dtype: str = _f("bf16", "storage of the recorded dtheta/lr: bf16 (2 B/weight/step) or fp32")
    loss_samples: int = _f(0, "record L_t as the mean loss of the first K samples of each minibatch (0 = the "
                                 "whole batch). K = batch/4 mimics the authors' 4-GPU runs, which recorded rank "
                                 "0's local loss (docs/method.md §1); the step still trains on the whole batch")
    allow_empty_layers: bool = _f(False, "allow a pruning decision to remove every weight of a layer")
    # --- baselines (docs/method.md §4) ------------------------------------------------------------
    mag_prune_frac: float = _f(0.1, "magnitude/random: fraction of the remaining weights pruned per iteration")
    target_sparsity: float = _f(-1.0, "magnitude/random: final sparsity S in [0,1); sets the per-iteration "
                                      "fraction to 1-(1-S)^(1/N_iter). Negative = unset")
    match_layers: str = _f("", "magnitude/random: prune within each layer to the per-layer sparsity of this run folder")
    # --- runtime (not hashed) ------------------------------------------------------------------
    out: str = _f("runs", "folder that holds run folders", kind="runtime")
    name: str = _f("", "run folder name inside --out (default: derived from the settings)", kind="runtime")
    data_dir: str = _f("", "folder with the data set files (see README)", kind="runtime")
    device: str = _f("auto", "auto | cpu | cuda", kind="runtime")
    pipeline: str = _f("auto", "input pipeline: auto | device (uint8 tensor on the device) | workers", kind="runtime")
    workers: int = _f(2, "DataLoader workers for the workers pipeline", kind="runtime")
    record_budget: str = _f("", "memory budget for the recording, e.g. 8GB (default: derived from free memory); a "
                                "larger recording is spilled to a memory-mapped file in the run folder",
                            kind="runtime")
    share_pretraining: bool = _f(True, "reuse the pretrained weights of any run with the same model, data, seed, "
                                       "N_pre, learning rate, batch size and validation split (kept once in "
                                       "<out>/pretrained/); off: every run pretrains in its own folder",
                                 kind="runtime")
    tensorboard: bool = _f(False, "also write TensorBoard scalars and |gamma| histograms", kind="runtime")
    preset: str = _f("", "name of the preset applied before the flags (demo, paper, ...)", kind="runtime")

    # ---------------------------------------------------------------------------------------------
    def validate(self) -> "Config":
        """Refuse out-of-range settings before any work starts (one-line ConfigError). The model and
        data set names are checked against their registries by ``experiment.check_config``."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"--{_flag(name)} must be one of {', '.join(choices)} (got {getattr(self, name)!r})")
        for name in ("n_pre", "n_iter", "n_prune", "n_post", "patience", "max_steps_per_epoch", "workers",
                     "loss_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be >= 0 (got {getattr(self, name)})")
        for name in ("batch_size", "lasso_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{_flag(name)} must be > 0 (got {getattr(self, name)})")
        for name in ("l1_coeff", "lr_train", "lr_prune", "lasso_lr0"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"--{_flag(name)} must be a positive finite number (got {v})")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1) (got {self.momentum})")
        if not 0 < self.val_frac < 1:
            raise ConfigError(f"--val-frac must be in (0, 1) (got {self.val_frac})")
        if not 0 <= self.mag_prune_frac < 1:
            raise ConfigError(f"--mag-prune-frac must be in [0, 1) (got {self.mag_prune_frac})")
        if self.target_sparsity >= 1:
            raise ConfigError(f"--target-sparsity must be in [0, 1) (got {self.target_sparsity})")
        for f in fields(self):  # NaN passes every comparison below, and would silently poison a run
            if f.type == "float" and not math.isfinite(getattr(self, f.name)):
                raise ConfigError(f"--{_flag(f.name)} must be a finite number (got {getattr(self, f.name)})")
        if self.lasso_power_t < 0 or self.min_delta < 0:
            raise ConfigError("--lasso-power-t and --min-delta must be >= 0")
        if self.method.startswith("causal") and self.n_iter > 0 and self.n_prune == 0:
            raise ConfigError("causal pruning needs --n-prune >= 1 (the recorded SGD epochs)")
        if self.loss_samples > self.batch_size:
            raise ConfigError(f"--loss-samples ({self.loss_samples}) cannot exceed --batch-size ({self.batch_size})")
        if self.match_layers and self.method not in ("magnitude", "random"):
            raise ConfigError("--match-layers only applies to --method magnitude or random")
        if self.match_layers and not Path(self.match_layers).is_dir():
            raise ConfigError(f"--match-layers {self.match_layers} is not a run folder")
        if self.name and (self.name.strip() in ("", ".", "..") or any(c in self.name for c in "/\\")
                          or Path(self.name).is_absolute() or self.name != self.name.strip()):
            # The run folder is <out>/<name>; --overwrite clears it, so it must be a folder of its own.
            raise ConfigError(f"--name {self.name!r} must be a plain folder name inside --out (no '/', '\\', "
                              "'.', '..', absolute path or surrounding spaces); pass another --name")
        if self.record_budget:
            try:
                if parse_bytes(self.record_budget) <= 0:
                    raise ValueError
            except (ValueError, OverflowError):
                raise ConfigError(f"--record-budget must be an amount of memory such as 8GB or 512MB "
                                  f"(got {self.record_budget!r})") from None
        return self

    # ---------------------------------------------------------------------------------------------
    def prune_fraction(self) -> float:
        """Per-iteration fraction of remaining weights for magnitude/random (docs/method.md §4)."""
        if self.target_sparsity >= 0 and self.n_iter > 0:
            return 1.0 - (1.0 - self.target_sparsity) ** (1.0 / self.n_iter)
        return self.mag_prune_frac

    def hp_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["kind"] == "hp"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_name(self) -> str:
        """Readable and unique per configuration: method-model-dataset-seed plus a hash of the
        non-default hyperparameters (so adding a field with a default never renames old runs)."""
        if self.name:
            return self.name
        defaults = Config()
        changed = {k: v for k, v in self.hp_dict().items()
                   if k not in ("method", "model", "dataset", "seed") and v != getattr(defaults, k)}
        digest = settings_digest(changed)[:8]
        return f"{self.method}-{self.model}-{self.dataset}-s{self.seed}-{digest}"

    def run_dir(self) -> Path:
        return Path(self.out) / self.run_name()

    def replace(self, **kw: Any) -> "Config":
        return dataclasses.replace(self, **kw)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if typ == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ValueError(value)
        return str(value)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400), int(1e400)
        raise ConfigError(f"setting {f.name!r} must be a {typ} (got {value!r})") from exc


def config_from_dict(values: dict[str, Any], base: Config | None = None) -> Config:
    """Overlay ``values`` (keys with - or _) on ``base``; unknown keys are refused by name."""
    if not isinstance(values, dict):
        raise ConfigError(f"a configuration must be a mapping of settings (got {type(values).__name__})")
    known = {f.name: f for f in fields(Config)}
    updates = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {key!r}; valid settings: {', '.join(sorted(known))}")
        updates[name] = _coerce(known[name], value)
    return dataclasses.replace(base or Config(), **updates)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file of settings (a flat mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    # ValueError: YAML dates that do not exist (2001-13-45); RecursionError: absurd nesting.
    except (json.JSONDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def diff_configs(saved: dict[str, Any], current: Config) -> list[str]:
    """Hyperparameter keys whose values differ between a saved config.json and ``current``."""
    now = current.hp_dict()
    defaults = Config()
    # A key missing from an older config.json means that run used the default.
    return [k for k in sorted(now) if saved.get(k, getattr(defaults, k)) != now[k]]
