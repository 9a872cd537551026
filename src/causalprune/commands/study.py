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
    p.add_argument("--hessian-at", default="", metavar="L1[,L1...]",
                   help="first compute the top-k Hessian eigenvalues (as `analyze --hessian`) of every seed's "
                        "causal, global-magnitude and layer-matched magnitude runs at these L1_coeff values; "
                        "computed ones are reused (default: none)")
    p.add_argument("--k", type=int, default=3, help="eigenvalues per run for --hessian-at (default: 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where --hessian-at computes (default: auto)")
    p.set_defaults(handler=handle)

# The runs whose sharpness the study compares (paper §4.2, Fig. 3): causal against global magnitude,
# and layer-matched magnitude to tell a per-layer allocation's share from the choice of weights.
HESSIAN_METHODS = ("causal", "magnitude", "magnitude (layer-matched)")


def _hessians(rows: list[dict], at: tuple[float, ...], k: int, device: str) -> int:
    import math

    from tqdm.auto import tqdm

    from ..errors import ConfigError
    from ..results.flatness import AnalysisSettings, hessian_of_run
    from ..results.study import study_groups

    groups = study_groups(rows)
    missing = [v for v in at if not any(math.isclose(g["l1_coeff"], v, rel_tol=1e-9) for g in groups)]
    if missing:
        have = ", ".join(sorted({f"{g['l1_coeff']:g}" for g in groups})) or "none"
        raise ConfigError(f"--hessian-at {missing[0]:g} matches no finished causal run (L1_coeff values: {have})")
    runs = [g["runs"][m]["run_dir"] for g in groups if any(math.isclose(g["l1_coeff"], v, rel_tol=1e-9) for v in at)
            for m in HESSIAN_METHODS if g["runs"][m] is not None]
    st = AnalysisSettings(k=k).validate()
    for run in tqdm(runs, desc="hessian", unit="run", disable=None):
        hessian_of_run(run, st, device=device)
    return len(runs)


def handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..results.runs import read_runs
    from ..results.study import study_markdown, write_study

    def finished() -> list[dict]:
        return [r for r in read_runs(args.runs, require_finished=False) if r["finished"]]

    rows = finished()
    if args.hessian_at:
        from ..sweep import parse_grid

        print(f"top-{args.k} Hessian eigenvalues of {_hessians(rows, parse_grid(args.hessian_at, log=True), args.k, args.device)} runs")
        rows = finished()
    tables = write_study(rows, args.out)
    print(study_markdown(tables))
    print(f"results: {Path(args.out) / 'study.md'}, study.csv, study_pairs.csv, study.png")
    return 0
