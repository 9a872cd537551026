"""``causal-prune runs``: what run folders hold, as tables, from their small files alone.

Reads ``config.json``, ``summary.json`` and ``layer_sparsity.csv`` (falling back to the masks), so it
works on the kilobyte-sized artifacts committed under ``results/`` as well as on full run folders.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="tables of run folders: summary figures and per-iteration, per-layer sparsity",
                       description="One line per run from its summary.json; with --layers, each run's percent pruned "
                                   "per layer after every pruning iteration (from layer_sparsity.csv).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders holding run folders)")
    p.add_argument("--layers", action="store_true", help="also print each run's per-iteration, per-layer table")
    p.add_argument("--publish", default="", metavar="DIR",
                   help="copy each run's small artifacts (config.json, summary.json, metrics.csv, layer_sparsity.csv; "
                        "no checkpoints or masks) into DIR/<run name>/, without the machine's absolute paths")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..results.layers import layer_table, publish, read_layer_sparsity
    from ..results.runs import read_runs, summary_table

    rows = read_runs(args.runs, require_finished=False)
    print(summary_table(rows))
    if args.layers:
        for r in rows:
            print(f"## {r['label']}: percent pruned per layer after each iteration\n")
            print(layer_table(read_layer_sparsity(r["run_dir"])))
    for r in rows if args.publish else []:
        print(f"published {r['label']}: {publish(r['run_dir'], args.publish)}")
    return 0
