"""``causal-prune analyze``: flat minima of finished runs (paper §4.2): Hessian spectrum, loss landscape."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="top Hessian eigenvalues and loss landscapes of finished runs (into RUN/analysis/)",
        description="Load each run's final model (masks respected) and compute the top-k Hessian eigenvalues "
                    "(analysis/eigenvalues.json) and/or the filter-normalised 2-D loss landscape "
                    "(analysis/landscape.npz, .png). Without --hessian or --landscape both are computed. "
                    "Results computed with the same settings are reused.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders holding run folders)")
    p.add_argument("--hessian", action="store_true", help="top-k Hessian eigenvalues by power iteration")
    p.add_argument("--landscape", action="store_true", help="2-D loss surface along two filter-normalised directions")
    p.add_argument("--k", type=int, default=5, help="number of eigenvalues (default: 5)")
    p.add_argument("--iters", type=int, default=100, help="maximum power iterations per eigenvalue (default: 100)")
    p.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of the power iteration (default: 1e-4)")
    p.add_argument("--grid", type=int, default=21, help="landscape grid points per axis (default: 21)")
    p.add_argument("--span", type=float, default=1.0, help="landscape extent: alpha, beta in [-span, span] (default: 1)")
    p.add_argument("--batches", type=int, default=4, help="training batches the loss is averaged over (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches, start vectors and directions (default: 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to compute (default: auto)")
    p.add_argument("--data-dir", default="", metavar="DIR", help="data folder, if it moved since the run")
    p.add_argument("--overwrite", action="store_true", help="recompute results that already exist")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..results.flatness import AnalysisSettings, hessian_of_run, landscape_of_run, load_final_model
    from ..results.runs import read_runs

    st = AnalysisSettings(k=args.k, iters=args.iters, tol=args.tol, grid=args.grid, span=args.span,
                          batches=args.batches, seed=args.seed).validate()
    both = not (args.hessian or args.landscape)
    rows = read_runs(args.runs)
    opts = {"device": args.device, "data_dir": args.data_dir, "overwrite": args.overwrite}
    for row in tqdm(rows, desc="analyze", unit="run", disable=None):
        cache: dict = {}

        def loader(row=row, cache=cache):
            if "m" not in cache:
                cache["m"] = load_final_model(row["run_dir"], args.device, args.data_dir)
            return cache["m"]

        line = f"{row['label']:<34} {row['percent_pruned']:6.2f}% pruned"
        if args.hessian or both:
            eig = hessian_of_run(row["run_dir"], st, loader=loader, **opts)
            line += "  top eigenvalues " + ", ".join(f"{v:.4g}" for v in eig["eigenvalues"])
        if args.landscape or both:
            meta = landscape_of_run(row["run_dir"], st, loader=loader, label=row["label"], **opts)
            line += f"  landscape loss {meta['loss_min']:.3g}..{meta['loss_max']:.3g}"
        tqdm.write(line)
    print(f"results in each RUN/analysis/ ({len(rows)} run(s)); "
          "`causal-prune report RUN... --out report.html` shows them side by side")
    return 0
