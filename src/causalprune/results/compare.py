"""Methods under one protocol (docs/method.md §4): one table, one picture, one sentence.

The runs are ordinary run folders under ``base.out`` (reused when finished), all started from one
shared pretraining and sharing iteration 1's SGD epochs and recording (shared.py); the comparison's
own files go to the folder :meth:`ComparePaths.folder` names.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..paths import ComparePaths
from ..storage import atomic_path, write_text

__all__ = ["compare", "write_comparison", "with_fallback_dataset", "headline", "COMPARE_METHODS"]

# What `compare` can run, in the order of the table and the picture (the unpruned reference first).
# magnitude-matched prunes within each layer to the causal run's per-layer sparsity; causal-budget
# follows causal's per-layer count iteration by iteration (methods/budget.py).
COMPARE_METHODS = ("none", "magnitude", "magnitude-matched", "causal-budget", "causal")
# The order they run in: causal first, since magnitude may match its sparsity and layers.
_RUN_ORDER = ("causal", "none", "magnitude", "magnitude-matched", "causal-budget")


def _config(base: Config, method: str, causal: dict | None, match_sparsity: bool) -> Config:
    if method == "magnitude-matched":
        return base.replace(method="magnitude", match_layers=str(Path(causal["run_dir"]).resolve()))
    cfg = base.replace(method=method)
    if method == "magnitude" and match_sparsity:
        # Table 3's fractions were chosen to match causal's final sparsity (docs/method.md §4);
        # here magnitude matches this run's causal sparsity directly.
        cfg = cfg.replace(target_sparsity=causal["percent_pruned"] / 100.0)
    return cfg


def compare(base: Config, *, match_sparsity: bool, overwrite: bool = False,
            methods: tuple[str, ...] = COMPARE_METHODS) -> tuple[list[dict], Path]:
    """Run (or reuse) ``methods`` from ``base``; write comparison.md/.csv/.png. Returns the
    summaries (in :data:`COMPARE_METHODS` order, each with its ``method`` label and ``run_dir``)
    and the comparison folder."""
    from ..experiment import Experiment
    from ..shared import SharedEpochs

    unknown = [m for m in methods if m not in COMPARE_METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r} to compare; choose from {', '.join(COMPARE_METHODS)}")
    needs_causal = {"causal", "magnitude-matched"} & set(methods) or (match_sparsity and "magnitude" in methods)
    chosen = [m for m in _RUN_ORDER if m in methods or (m == "causal" and needs_causal)]
    summaries: dict[str, dict] = {}
    with SharedEpochs() as shared:
        for method in chosen:
            cfg = _config(base, method, summaries.get("causal"), match_sparsity)
            print(f"== {method} ==", flush=True)
            summaries[method] = {**Experiment(cfg, overwrite=overwrite, shared=shared).run(),
                                 "method": method, "run_dir": str(cfg.run_dir())}
    rows = [summaries[m] for m in COMPARE_METHODS if m in methods]
    # The causal run's hash (the last 8 characters of its name) keys the folder, so comparisons
    # under different protocols never overwrite each other.
    digest = base.replace(method="causal").run_name()[-8:]
    out = ComparePaths.folder(base.out, base.model, base.dataset, base.seed, digest)
    write_comparison(rows, out, title=f"{base.model} on {base.dataset}")
    return rows, out


def headline(rows: list[dict]) -> str:
    """One sentence: what the comparison shows, and how far it can be trusted."""
    pruned = sorted((r for r in rows if r["method"] != "none"), key=lambda r: -r["test_accuracy"])
    if not pruned:
        return "Only the unpruned run was compared."
    best, rest = pruned[0], pruned[1:]
    ref = next((r for r in rows if r["method"] == "none"), None)
    text = (f"At {best['percent_pruned']:.1f}% pruned, {best['method']} kept the most test accuracy "
            f"({best['test_accuracy']:.2f}%")
    text += f", against {ref['test_accuracy']:.2f}% unpruned)" if ref else ")"
    def at(r: dict) -> str:  # a method that ended at another sparsity says where
        far = abs(r["percent_pruned"] - best["percent_pruned"]) >= 0.5
        return f"{r['test_accuracy']:.2f}%" + (f" at {r['percent_pruned']:.1f}% pruned" if far else "")

    if rest:
        text += ", ahead of " + ", ".join(f"{r['method']} ({at(r)})" for r in rest)
    return text + ("; this is one seed of a short protocol, so differences of a point or two are within "
                   "seed-to-seed noise (results/README.md has the multi-seed study).")


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
    layers = list(dict.fromkeys(k for r in rows for k in (r.get("per_layer") or {})))
    if layers:
        md += ["", "Weights pruned in each layer (%):", "",
               "| method | " + " | ".join(k.removesuffix(".weight") for k in layers) + " |",
               "|---|" + "---:|" * len(layers)]
        md += [f"| {r['method']} | " + " | ".join(f"{(r.get('per_layer') or {}).get(k, 0.0):.1f}" for k in layers)
               + " |" for r in rows]
    md += ["", headline(rows)]
    write_text(paths.md, "\n".join(md) + "\n")
    _plot(rows, paths.png, title)


def _plot(rows: list[dict], png: Path, title: str) -> None:
    """Left: test accuracy of each method (with its sparsity). Right: each method's sparsity per
    layer, which is where the methods differ most."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = list(dict.fromkeys(k for r in rows for k in (r.get("per_layer") or {})))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [r["method"] for r in rows]
    accs = [r["test_accuracy"] for r in rows]
    bars = left.bar(range(len(rows)), accs, color=[colors[i % len(colors)] for i in range(len(rows))])
    for b, r in zip(bars, rows):
        left.annotate(f"{r['test_accuracy']:.2f}%\n{r['percent_pruned']:.1f}% pruned",
                      (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7.5,
                      xytext=(0, 2), textcoords="offset points")
    lo = min(accs)
    left.set_ylim(max(0.0, lo - 3 * max(1.0, max(accs) - lo)), max(accs) + 0.25 * max(1.0, max(accs) - lo) + 1)
    left.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=8)
    left.set_ylabel("test accuracy (%)")
    left.set_title("accuracy at equal sparsity")
    left.grid(axis="y", alpha=0.3)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(layers))
    for i, r in enumerate(rows):
        vals = [(r.get("per_layer") or {}).get(k, 0.0) for k in layers]
        right.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=r["method"],
                  color=colors[i % len(colors)])
    right.set_xticks(x, [k.removesuffix(".weight") for k in layers], fontsize=8)
    right.set_ylabel("weights pruned in the layer (%)")
    right.set_ylim(0, 128)  # room above the bars for the legend
    right.set_yticks(range(0, 101, 20))
    right.set_title("where each method prunes")
    right.grid(axis="y", alpha=0.3)
    right.legend(fontsize=7.5, loc="upper center", ncol=3)
    fig.suptitle(title)
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
