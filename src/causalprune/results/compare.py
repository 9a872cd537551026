"""none, magnitude and causal under one protocol (docs/method.md §4): one table, one picture.

The three runs are ordinary run folders under ``base.out`` (reused when finished); the comparison's
own files go to the folder :meth:`ComparePaths.folder` names.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..config import Config
from ..paths import ComparePaths
from ..storage import atomic_path, write_text

__all__ = ["compare", "write_comparison", "with_fallback_dataset"]

# Row order of the table and the picture: the unpruned reference first, causal last.
_ORDER = ("none", "magnitude", "causal")


def compare(base: Config, *, match_sparsity: bool, overwrite: bool = False) -> tuple[list[dict], Path]:
    """Run (or reuse) none, causal and magnitude from ``base``; write comparison.md/.csv/.png.
    Returns the summaries (in ``_ORDER``, each with its ``run_dir``) and the comparison folder."""
    from ..experiment import Experiment

    summaries = {}
    for method in ("none", "causal", "magnitude"):  # causal first: magnitude may match its sparsity
        cfg = base.replace(method=method)
        if method == "magnitude" and match_sparsity:
            # Table 3's fractions were chosen to match causal's final sparsity (docs/method.md §4);
            # here magnitude matches this run's causal sparsity directly.
            cfg = cfg.replace(target_sparsity=summaries["causal"]["percent_pruned"] / 100.0)
        print(f"== {method} ==", flush=True)
        summaries[method] = Experiment(cfg, overwrite=overwrite).run()
        summaries[method]["run_dir"] = str(cfg.run_dir())
    rows = [summaries[m] for m in _ORDER]
    # The causal run's hash (the last 8 characters of its name) keys the folder, so comparisons
    # under different protocols never overwrite each other.
    digest = base.replace(method="causal").run_name()[-8:]
    out = ComparePaths.folder(base.out, base.model, base.dataset, base.seed, digest)
    write_comparison(rows, out, title=f"{base.model} on {base.dataset}")
    return rows, out


def write_comparison(rows: list[dict], out: Path, title: str) -> None:
    """comparison.md, comparison.csv and comparison.png in ``out``."""
    paths = ComparePaths(out)
    cols = ["method", "percent_pruned", "test_accuracy", "best_val_accuracy", "prunable_nonzero",
            "macs_sparse", "wall_seconds", "run_dir"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    # Run folders relative to the comparison folder (its siblings): a committed CSV carries no
    # machine's absolute path.
    w.writerows([{**r, "run_dir": os.path.relpath(r["run_dir"], out)} if r.get("run_dir") else r for r in rows])
    write_text(paths.csv, buf.getvalue())
    md = [f"# {title}", "", "| method | % pruned | test accuracy (%) | best val accuracy (%) | nonzero weights | wall (s) |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['method']} | {r['percent_pruned']:.2f} | {r['test_accuracy']:.2f} | "
                  f"{r['best_val_accuracy']:.2f} | {r['prunable_nonzero']:,} | {r['wall_seconds']:.0f} |")
    write_text(paths.md, "\n".join(md) + "\n")
    _plot(rows, paths.png, title)


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


def with_fallback_dataset(base: Config, fallback: str) -> tuple[Config, str | None]:
    """``base`` if its data set loads (or no ``fallback`` is given: then nothing is loaded), else
    ``base`` on ``fallback`` -- with the mlp model when that is digits -- and a line saying so."""
    from ..data import load_data_for
    from ..errors import DataError
    from ..experiment import check_config

    if not fallback:
        return base, None
    try:
        load_data_for(base)
    except DataError as exc:
        model = "mlp" if fallback == "digits" else base.model
        note = (f"{base.dataset} is not available ({str(exc).split(';')[0]}); "
                f"running the same comparison on {fallback} with {model}")
        return check_config(base.replace(dataset=fallback, model=model)), note
    return base, None
