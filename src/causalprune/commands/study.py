"""``causal-prune study``: the multi-seed study's tables from finished run folders (results/study.py)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="multi-seed tables: accuracy at equal sparsity (mean ± 95%% interval), paired "
                                     "differences with tests, transition widths, Hessian eigenvalues",
                       description="Group each causal run with the baselines made from it (as `sweep --baselines "
                                   "magnitude,magnitude-matched,random-matched,causal-budget,unpruned` makes them) "
                                   "and write study.md, study.csv, study_pairs.csv and study.png to --out. Unfinished "
                                   "runs are left out, so it can be run while a study is still going.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders holding run folders)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the study's files")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..results.runs import read_runs
    from ..results.study import study_markdown, write_study

    rows = [r for r in read_runs(args.runs, require_finished=False) if r["finished"]]
    tables = write_study(rows, args.out)
    print(study_markdown(tables))
    print(f"results: {Path(args.out) / 'study.md'}, study.csv, study_pairs.csv, study.png")
    return 0
