"""Which weights two runs prune in common (paper Fig. 1b), pair by pair: overlaps.csv,
overlaps_per_layer.csv and overlaps.png of a set of runs."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, MaskError
from ..paths import OverlapPaths
from .runs import expand_run_dirs, read_runs, run_masks

__all__ = ["pick_runs", "same_model", "overlap_tables", "write_overlaps", "mask_overlaps"]


def pick_runs(runs: Sequence[str | Path], vs: Sequence[str | Path] | None = None
              ) -> tuple[list[dict], list[dict] | None]:
    """The rows of ``runs`` and of ``vs`` (None without ``vs``: every pair is drawn). All are read
    in one call, so the labels are unique across both sets."""
    everything = read_runs(list(runs) + list(vs or []))
    if len(everything) < 2:
        raise ConfigError("masks needs at least two runs to compare; pass two or more run folders")
    if not vs:
        return everything, None

    def pick(folders):
        wanted = {p.resolve() for p in expand_run_dirs(folders)}
        return [r for r in everything if Path(r["run_dir"]).resolve() in wanted]

    return pick(runs), pick(vs)


def same_model(rows: list[dict]) -> None:
    """Masks are compared weight by weight: refuse runs of more than one model and data set."""
    kinds = sorted({(r["model"], r["dataset"]) for r in rows})
    if len(kinds) > 1:
        raise MaskError("masks can only be compared between runs of one model and data set (got "
                        + ", ".join(f"{m} on {d}" for m, d in kinds) + "); pass runs of one of them")


def overlap_tables(named: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(pairwise rows, per-layer rows) for every unordered pair of mask sets, in the given order."""
    from ..analysis import overlap_per_layer, pairwise_overlaps

    pairs = pairwise_overlaps(named)
    per_layer = []
    for (na, a), (nb, b) in itertools.combinations(named.items(), 2):
        for layer, pct in overlap_per_layer(a, b).items():
            (both, only_a), (only_b, neither) = pct.tolist()
            per_layer.append({"run_a": na, "run_b": nb, "layer": layer, "weights": a[layer].numel(),
                              "pa": both + only_a, "pb": both + only_b, "both": both, "only_a": only_a,
                              "only_b": only_b, "neither": neither})
    return pairs, per_layer


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_overlaps(rows: list[dict], out: Path, vs: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """overlaps.csv, overlaps_per_layer.csv and overlaps.png of ``rows`` (+ ``vs``) into ``out``.
    The CSVs hold every pair; with ``vs`` the picture draws ``rows`` against ``vs`` only."""
    from ..analysis import plot_overlaps
    from ..storage import write_text

    everything = rows + [r for r in (vs or []) if r["run_dir"] not in {x["run_dir"] for x in rows}]
    same_model(everything)
    named = {r["label"]: run_masks(r) for r in everything}
    pairs, per_layer = overlap_tables(named)
    paths = OverlapPaths(out)
    write_text(paths.csv, _csv(pairs))
    write_text(paths.per_layer_csv, _csv(per_layer))
    model, dataset = everything[0]["model"], everything[0]["dataset"]
    title = f"Overlap of pruned weights (% of all prunable weights): {model} on {dataset}"
    if vs:
        plot_overlaps(named, paths.png, title=title, rows=[r["label"] for r in rows],
                      cols=[r["label"] for r in vs])
    else:
        plot_overlaps(named, paths.png, title=title)
    return pairs, per_layer


def mask_overlaps(runs: Sequence[str | Path], out: str | Path, vs: Sequence[str | Path] | None = None
                  ) -> list[dict]:
    """``causal-prune masks`` as one call: read the runs, write their overlap files into ``out``,
    return the pairwise rows."""
    rows, against = pick_runs(runs, vs)
    pairs, _ = write_overlaps(rows, Path(out), against)
    return pairs
