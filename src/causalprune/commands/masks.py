"""``causal-prune masks``: which weights two runs prune in common (paper Fig. 1b), pair by pair."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

__all__ = ["register", "overlap_tables", "write_overlaps"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "masks", help="pairwise overlap of the final masks of runs: CSV tables and annotated heat maps",
        description="For every pair of runs: the percent of weights pruned by both, by only one, by neither "
                    "(overlaps.csv, per layer in overlaps_per_layer.csv) and annotated 2x2 heat maps with each "
                    "run's percent pruned on the axes (overlaps.png).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or folders holding run folders)")
    p.add_argument("--vs", nargs="+", default=None, metavar="RUN",
                   help="draw the RUNs (rows) against these runs (columns) instead of every pair; "
                        "the CSVs still hold every pair")
    p.add_argument("--out", default="mask-overlaps", metavar="DIR",
                   help="folder for overlaps.csv, overlaps_per_layer.csv, overlaps.png (default: mask-overlaps)")
    p.set_defaults(handler=handle)


def _same_model(rows: list[dict]) -> None:
    from ..errors import MaskError

    kinds = sorted({(r["model"], r["dataset"]) for r in rows})
    if len(kinds) > 1:
        raise MaskError("masks can only be compared between runs of one model and data set (got "
                        + ", ".join(f"{m} on {d}" for m, d in kinds) + "); pass runs of one of them")


def overlap_tables(named: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(pairwise rows, per-layer rows) for every unordered pair of mask sets, in the given order."""
    import itertools

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
    """overlaps.csv, overlaps_per_layer.csv and overlaps.png of ``rows`` (+ ``vs``) into ``out``."""
    from ..analysis import plot_overlaps
    from ..paths import RunPaths
    from ..results.runs import run_masks
    from ..storage import write_text

    everything = rows + [r for r in (vs or []) if r["run_dir"] not in {x["run_dir"] for x in rows}]
    _same_model(everything)
    named = {r["label"]: run_masks(r) for r in everything}
    pairs, per_layer = overlap_tables(named)
    paths = RunPaths(out)
    write_text(paths.file("overlaps.csv"), _csv(pairs))
    write_text(paths.file("overlaps_per_layer.csv"), _csv(per_layer))
    model, dataset = everything[0]["model"], everything[0]["dataset"]
    title = f"Overlap of pruned weights (% of all prunable weights): {model} on {dataset}"
    if vs:
        plot_overlaps(named, paths.file("overlaps.png"), title=title, rows=[r["label"] for r in rows],
                      cols=[r["label"] for r in vs])
    else:
        plot_overlaps(named, paths.file("overlaps.png"), title=title)
    return pairs, per_layer


def handle(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..results.runs import expand_run_dirs, read_runs

    everything = read_runs(list(args.runs) + list(args.vs or []))  # one call: labels unique across both
    if len(everything) < 2:
        raise ConfigError("masks needs at least two runs to compare; pass two or more run folders")

    def pick(folders):
        wanted = {p.resolve() for p in expand_run_dirs(folders)}
        return [r for r in everything if Path(r["run_dir"]).resolve() in wanted]

    rows, vs = (pick(args.runs), pick(args.vs)) if args.vs else (everything, None)
    pairs, _ = write_overlaps(rows, Path(args.out), vs)
    print(f"{'run a':<34} {'run b':<34} {'both':>7} {'only a':>7} {'only b':>7} {'neither':>8}  (% of weights)")
    for p in pairs:
        print(f"{p['run_a'][:34]:<34} {p['run_b'][:34]:<34} {p['both']:7.2f} {p['only_a']:7.2f} "
              f"{p['only_b']:7.2f} {p['neither']:8.2f}")
    print(f"results: {args.out}/overlaps.csv, overlaps_per_layer.csv, overlaps.png")
    return 0
