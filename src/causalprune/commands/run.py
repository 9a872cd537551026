"""``causal-prune run``: one experiment (Algorithm 1 for one method)."""

from __future__ import annotations

import argparse
import json

from .options import add_config_flags, resolve_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one experiment (pretrain, prune iteratively, post-train)",
                       description="Run Algorithm 1 for one method. Rerunning the same command resumes.")
    add_config_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration as JSON and exit")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run folder of this configuration")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.dry_run:
        out = cfg.to_dict()
        out["run_dir"] = str(cfg.run_dir())
        out["prune_fraction_per_iteration"] = cfg.prune_fraction()
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    from ..experiment import Experiment

    Experiment(cfg, overwrite=args.overwrite).run()
    return 0
