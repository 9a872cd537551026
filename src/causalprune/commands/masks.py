"""``causal-prune masks``: which weights two runs prune in common (paper Fig. 1b), pair by pair."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "masks", help="pairwise overlap of the final masks of runs: CSV tables and annotated heat maps",
        description="For every pair of runs: the percent of weights pruned by both, by only one, by neither "
                    "(overlaps.csv, per layer in overlaps_per_layer.csv) and annotated 2x2 heat maps with each "
                    "run's percent pruned on the axes (overlaps.png).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders holding run folders)")
    p.add_argument("--vs", nargs="+", default=None, metavar="RUN",
                   help="draw the RUNs (rows) against these runs (columns) instead of every pair; "
                        "the CSVs still hold every pair")
    p.add_argument("--out", default="mask-overlaps", metavar="DIR",
                   help="folder for overlaps.csv, overlaps_per_layer.csv, overlaps.png (default: mask-overlaps)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..paths import OverlapPaths
    from ..results.overlap import mask_overlaps

    pairs = mask_overlaps(args.runs, args.out, args.vs)
    print(f"{'run a':<34} {'run b':<34} {'both':>7} {'only a':>7} {'only b':>7} {'neither':>8}  (% of weights)")
    for p in pairs:
        print(f"{p['run_a'][:34]:<34} {p['run_b'][:34]:<34} {p['both']:7.2f} {p['only_a']:7.2f} "
              f"{p['only_b']:7.2f} {p['neither']:8.2f}")
    paths = OverlapPaths(args.out)
    # The folder as the user typed it, so the line reads like the command line.
    print(f"results: {args.out}/{paths.csv.name}, {paths.per_layer_csv.name}, {paths.png.name}")
    return 0
