"""``causal-prune table2``: the paper's Table 2 for one data set -- none / magnitude / causal per
model under the paper preset, with the paper's own numbers beside ours."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from ..paths import RunPaths
from ..presets import PAPER_TABLE2, table3_key
from ..storage import write_text
from .options import add_config_flags, resolve_config

__all__ = ["register", "table2_rows", "table2_markdown"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table2", help="reproduce the paper's Table 2 for a data set (paper preset)")
    add_config_flags(p, skip=("method", "model"))
    p.add_argument("--models", nargs="+", default=["lenet", "alexnet32", "resnet18-nobn"],
                   help="models to run (default: the paper's three, in the variants it ran)")
    p.add_argument("--match-sparsity", action="store_true",
                   help="magnitude matches causal's sparsity instead of using Table 3's fraction")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=handle, preset="paper")


def table2_rows(results: dict[str, list[dict]], dataset: str) -> list[dict]:
    rows = []
    for model, runs in results.items():
        paper = PAPER_TABLE2.get(table3_key(model, dataset), {})
        for r in runs:
            ref = paper.get(r["method"])
            rows.append({"model": model, "dataset": dataset, "method": r["method"],
                         "percent_pruned": r["percent_pruned"], "test_accuracy": r["test_accuracy"],
                         "paper_percent_pruned": ref[0] if ref else None,
                         "paper_test_accuracy": ref[1] if ref else None,
                         "wall_seconds": r["wall_seconds"], "run_dir": r.get("run_dir", "")})
    return rows


def _cell(pct, acc) -> str:
    return "—" if pct is None else f"{pct:.2f}% ({acc:.2f}%)"


def table2_markdown(rows: list[dict], dataset: str) -> str:
    """Table 2's layout: percent pruned (test accuracy) per method, ours above the paper's."""
    out = [f"# Table 2 on {dataset}: percent pruned (test accuracy)", "",
           "| model | source | no pruning | magnitude | causal |", "|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["method"]: r for r in rows if r["model"] == model}
        ours = [_cell(mine[m]["percent_pruned"], mine[m]["test_accuracy"]) if m in mine else "—"
                for m in ("none", "magnitude", "causal")]
        paper = [_cell(mine[m]["paper_percent_pruned"], mine[m]["paper_test_accuracy"]) if m in mine else "—"
                 for m in ("none", "magnitude", "causal")]
        out.append(f"| {model} | ours | " + " | ".join(ours) + " |")
        out.append(f"| {model} | paper | " + " | ".join(paper) + " |")
    return "\n".join(out) + "\n"


def handle(args: argparse.Namespace) -> int:
    from .compare import compare

    results = {}
    for model in args.models:
        base = resolve_config(args, method="causal", model=model)
        rows, _ = compare(base, match_sparsity=args.match_sparsity, overwrite=args.overwrite)
        results[model] = rows
    dataset = base.dataset
    rows = table2_rows(results, dataset)
    out = RunPaths(Path(base.out) / f"table2-{dataset}")
    md = table2_markdown(rows, dataset)
    write_text(out.file("table2.md"), md)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out.file("table2.csv"), buf.getvalue())
    print(md)
    print(f"table: {out.file('table2.md')}, {out.file('table2.csv')}")
    return 0
