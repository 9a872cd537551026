"""``causal-prune table2``: the paper's Table 2 for one data set -- none / magnitude / causal per
model under the paper preset, with the paper's own numbers beside ours."""

from __future__ import annotations

import argparse

from .options import add_config_flags, resolve_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table2", help="reproduce the paper's Table 2 for a data set (paper preset)")
    add_config_flags(p, skip=("method", "model"))
    p.add_argument("--models", nargs="+", default=["lenet", "alexnet32", "resnet18-nobn"],
                   help="models to run (default: the paper's three, in the variants it ran)")
    p.add_argument("--match-sparsity", action="store_true",
                   help="magnitude matches causal's sparsity instead of using Table 3's fraction")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=handle, preset="paper")


def handle(args: argparse.Namespace) -> int:
    from ..results.table2 import run_table2

    # A generator: each model's settings (its Table 3 cell) are resolved when its turn comes.
    configs = (resolve_config(args, method="causal", model=model) for model in args.models)
    md, paths = run_table2(configs, match_sparsity=args.match_sparsity, overwrite=args.overwrite)
    print(md)
    print(f"table: {paths.md}, {paths.csv}")
    return 0
