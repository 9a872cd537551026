"""``causal-prune report``: one self-contained HTML page of runs, a sweep and their analyses."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML report (table, phase shift, overlaps, eigenvalues, landscapes)",
        description="Write one HTML file (images embedded, no network or JavaScript needed) with a Table-2-style "
                    "table of the runs, the phase-shift curve of --sweep, the mask overlaps, the Hessian "
                    "eigenvalues and loss landscapes (from `causal-prune analyze`), each run's configuration, "
                    "and findings computed from the data.")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run folders (or folders holding run folders); default: the finished runs of --sweep")
    p.add_argument("--out", default="report.html", metavar="FILE", help="the HTML file (default: report.html)")
    p.add_argument("--sweep", default=None, metavar="DIR", help="a sweep folder written by `causal-prune sweep`")
    p.add_argument("--masks-csv", nargs="+", default=[], metavar="CSV",
                   help="overlaps.csv file(s) written by `causal-prune masks`, shown as tables")
    p.add_argument("--title", default=None, help="page title (default: derived from the models and data sets)")
    p.add_argument("--findings", action="store_true",
                   help="print the findings of --sweep, computed from its sweep.csv alone (no run folders "
                        "needed), and write no HTML")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..report.build import build_report, describe, report_rows

    if args.findings:
        if not args.sweep or args.runs:
            raise ConfigError("--findings reads a sweep.csv alone; pass --sweep DIR and no run folders")
        from ..report.build import sweep_findings

        print(sweep_findings(args.sweep))
        return 0
    if not args.runs and not args.sweep:
        raise ConfigError("report needs run folders and/or --sweep DIR; e.g. causal-prune report runs/causal-* --out r.html")
    out = build_report(list(args.runs), args.out, sweep=args.sweep, masks_csv=args.masks_csv, title=args.title)
    shown, _, _ = report_rows(list(args.runs), args.sweep)
    print(describe(shown))
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained; open it in any browser)")
    return 0
