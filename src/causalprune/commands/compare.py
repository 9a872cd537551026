"""``causal-prune compare``: none, magnitude and causal under one protocol, one table, one picture."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from ..paths import RunPaths
from ..storage import atomic_path, write_text
from .options import add_config_flags, resolve_config

__all__ = ["register", "compare", "write_comparison"]

_ORDER = ("none", "magnitude", "causal")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run none, magnitude and causal under one protocol and compare them")
    add_config_flags(p, skip=("method",))
    p.add_argument("--match-sparsity", action="store_true",
                   help="magnitude takes causal's final sparsity as its --target-sparsity")
    p.add_argument("--overwrite", action="store_true", help="recompute the runs even if they exist")
    p.add_argument("--fallback-dataset", default="", metavar="NAME",
                   help="if the data set cannot be found, say so and run the same comparison on NAME "
                        "(with the mlp model when NAME is digits)")
    p.set_defaults(handler=handle)


def compare(base, *, match_sparsity: bool, overwrite: bool = False) -> tuple[list[dict], Path]:
    from ..experiment import Experiment

    summaries = {}
    for method in ("none", "causal", "magnitude"):  # causal first: magnitude may match its sparsity
        cfg = base.replace(method=method)
        if method == "magnitude" and match_sparsity:
            cfg = cfg.replace(target_sparsity=summaries["causal"]["percent_pruned"] / 100.0)
        print(f"== {method} ==", flush=True)
        summaries[method] = Experiment(cfg, overwrite=overwrite).run()
        summaries[method]["run_dir"] = str(cfg.run_dir())
    rows = [summaries[m] for m in _ORDER]
    out = Path(base.out) / f"compare-{base.model}-{base.dataset}-s{base.seed}-{base.replace(method='causal').run_name()[-8:]}"
    write_comparison(rows, out, title=f"{base.model} on {base.dataset}")
    return rows, out


def write_comparison(rows: list[dict], out: Path, title: str) -> None:
    """comparison.md, comparison.csv and comparison.png in ``out``."""
    paths = RunPaths(out)
    cols = ["method", "percent_pruned", "test_accuracy", "best_val_accuracy", "prunable_nonzero",
            "macs_sparse", "wall_seconds", "run_dir"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(paths.file("comparison.csv"), buf.getvalue())
    md = [f"# {title}", "", "| method | % pruned | test accuracy (%) | best val accuracy (%) | nonzero weights | wall (s) |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['method']} | {r['percent_pruned']:.2f} | {r['test_accuracy']:.2f} | "
                  f"{r['best_val_accuracy']:.2f} | {r['prunable_nonzero']:,} | {r['wall_seconds']:.0f} |")
    write_text(paths.file("comparison.md"), "\n".join(md) + "\n")
    _plot(rows, paths.file("comparison.png"), title)


def _plot(rows: list[dict], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r, marker in zip(rows, "osD^v"):
        ax.scatter(r["percent_pruned"], r["test_accuracy"], s=70, marker=marker, label=r["method"])
        ax.annotate(f"{r['test_accuracy']:.2f}%", (r["percent_pruned"], r["test_accuracy"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("weights pruned (% of prunable weights)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy vs. sparsity: {title}")
    ax.set_xlim(-5, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def handle(args: argparse.Namespace) -> int:
    from ..data import load_data_for
    from ..experiment import check_config
    from ..errors import DataError

    base = resolve_config(args, method="causal")
    if args.fallback_dataset:
        try:
            load_data_for(base)
        except DataError as exc:
            fallback = args.fallback_dataset
            model = "mlp" if fallback == "digits" else base.model
            print(f"{base.dataset} is not available ({str(exc).split(';')[0]}); "
                  f"running the same comparison on {fallback} with {model}", flush=True)
            base = check_config(base.replace(dataset=fallback, model=model))
    rows, out = compare(base, match_sparsity=args.match_sparsity, overwrite=args.overwrite)
    print()
    print((out / "comparison.md").read_text())
    print(f"results: {out}/comparison.md (table), {out}/comparison.csv, picture: {out}/comparison.png")
    return 0
