"""``causal-prune compare``: none, magnitude and causal under one protocol, one table, one picture."""

from __future__ import annotations

import argparse

from .options import add_config_flags, resolve_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run causal pruning and the baselines under one protocol and compare them")
    add_config_flags(p, skip=("method",))
    p.add_argument("--match-sparsity", action="store_true",
                   help="magnitude takes causal's final sparsity as its --target-sparsity")
    p.add_argument("--methods", default="all", metavar="LIST",
                   help="which of none, magnitude, magnitude-matched (within each layer to causal's per-layer "
                        "sparsity), causal-budget (ours: causal's per-layer count, magnitude's choice) and causal "
                        "to run, or all (the default)")
    p.add_argument("--overwrite", action="store_true", help="recompute the runs even if they exist")
    p.add_argument("--fallback-dataset", default="", metavar="NAME",
                   help="if the data set cannot be found, say so and run the same comparison on NAME "
                        "(with the mlp model when NAME is digits)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..paths import ComparePaths
    from ..results.compare import (
        COMPARE_METHODS,
        compare,
        headline,
        with_fallback_dataset,
    )

    base, note = with_fallback_dataset(resolve_config(args, method="causal"), args.fallback_dataset)
    if note:
        print(note, flush=True)
    methods = COMPARE_METHODS if args.methods.strip() == "all" else \
        tuple(m.strip() for m in args.methods.split(",") if m.strip())
    rows, out = compare(base, match_sparsity=args.match_sparsity, overwrite=args.overwrite, methods=methods)
    paths = ComparePaths(out)
    print()
    print(paths.md.read_text().rstrip().removesuffix(headline(rows)).rstrip())  # the sentence comes last
    print(f"\nresults: {paths.md} (table), {paths.csv}, picture: {paths.png}")
    print(headline(rows))
    return 0
