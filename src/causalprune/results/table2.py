"""The paper's Table 2 for one data set: percent pruned (test accuracy) of none / magnitude /
causal per model, ours beside the paper's own numbers."""

from __future__ import annotations

import csv
import io
from typing import Iterable

from ..config import Config
from ..errors import ConfigError
from ..paths import Table2Paths
from ..presets import PAPER_TABLE2, table3_key
from ..storage import write_text

__all__ = ["table2_rows", "table2_markdown", "run_table2"]

# Table 2's column order.
_METHODS = ("none", "magnitude", "causal")


def table2_rows(results: dict[str, list[dict]], dataset: str) -> list[dict]:
    """One row per model and method: our numbers and the paper's (None where it has no cell)."""
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
                for m in _METHODS]
        paper = [_cell(mine[m]["paper_percent_pruned"], mine[m]["paper_test_accuracy"]) if m in mine else "—"
                 for m in _METHODS]
        out.append(f"| {model} | ours | " + " | ".join(ours) + " |")
        out.append(f"| {model} | paper | " + " | ".join(paper) + " |")
    return "\n".join(out) + "\n"


def run_table2(configs: Iterable[Config], *, match_sparsity: bool, overwrite: bool = False
               ) -> tuple[str, Table2Paths]:
    """:func:`compare` for each config (one per model, same data set), in order, then table2.md and
    table2.csv. ``configs`` is consumed lazily, so a generator resolves each model's settings only
    when its turn comes. Returns the Markdown table and the folder's paths."""
    from .compare import compare

    results: dict[str, list[dict]] = {}
    base = None
    for base in configs:
        results[base.model], _ = compare(base, match_sparsity=match_sparsity, overwrite=overwrite, methods=_METHODS)
    if base is None:
        raise ConfigError("table2 needs at least one model; pass --models")
    dataset = base.dataset
    rows = table2_rows(results, dataset)
    paths = Table2Paths(Table2Paths.folder(base.out, dataset))
    md = table2_markdown(rows, dataset)
    write_text(paths.md, md)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(paths.csv, buf.getvalue())
    return md, paths
