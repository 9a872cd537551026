"""Flags generated from :class:`causalprune.config.Config`, and their resolution order:
defaults < --preset < --config FILE < flags given on the command line."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from ..config import CHOICES, Config, config_from_dict, load_config_file
from ..presets import preset_values

__all__ = ["add_config_flags", "resolve_config"]


def add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field (``n_pre`` -> ``--n-pre``), plus --config and --preset."""
    p.add_argument("--config", metavar="FILE", default=None, help="JSON or YAML file of settings")
    groups = {"hp": p.add_argument_group("hyperparameters (hashed into the run name)"),
              "runtime": p.add_argument_group("runtime (not hashed)")}
    for f in fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        g = groups[f.metadata["kind"]]
        help_text = f"{f.metadata['help']} (default: {default!r})"
        if f.type in ("bool", bool):
            # --flag / --no-flag, so that a setting on by default can be turned off too.
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
            continue
        conv = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        g.add_argument(flag, dest=f.name, type=conv, default=argparse.SUPPRESS, metavar=f.name.upper(),
                       choices=CHOICES.get(f.name), help=help_text)


def resolve_config(args: argparse.Namespace, **forced: Any) -> Config:
    """Defaults < preset < config file < command-line flags < ``forced``."""
    names = {f.name for f in fields(Config)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    from_file = load_config_file(args.config) if getattr(args, "config", None) else {}
    preset = flags.get("preset") or from_file.get("preset") or ""
    cfg = Config()
    if preset:
        base = preset_values(preset)
        # The Table 3 cell follows the model and data set the run will have, forced ones included
        # (``table2`` forces each of its --models in turn).
        def final(key: str) -> Any:
            return next(v for v in (forced.get(key), flags.get(key), from_file.get(key), base.get(key),
                                    getattr(cfg, key)) if v)

        model, dataset = final("model"), final("dataset")
        cfg = config_from_dict(preset_values(preset, model, dataset), cfg)
    cfg = config_from_dict(from_file, cfg)
    cfg = config_from_dict(flags, cfg)
    cfg = config_from_dict(forced, cfg) if forced else cfg
    from ..experiment import check_config

    return check_config(cfg)
