"""``causal-prune sweep``: the phase-shift sweep (paper Fig. 1a) and the hyperparameter study (Fig. 2)."""

from __future__ import annotations

import argparse
import json

from .options import add_config_flags, resolve_config

__all__ = ["register"]

# Set per run by the sweep; --name is left out too, since every run needs its own folder.
_VARIED = ("method", "seed", "l1_coeff", "target_sparsity", "match_layers", "name")
# --baselines names of sweep.BASELINES, in the same order.
BASELINE_FLAGS = ("magnitude", "magnitude-matched", "random-matched", "causal-budget", "magnitude-budget", "unpruned")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="causal over an L1_coeff grid vs magnitude (global and layer-matched) and random: "
                      "phase-shift curve, transition widths, hyperparameter strip plots",
        description="Run causal pruning over a grid of --l1-coeff values and the baselines under the same "
                    "protocol (every other flag is the same as for `run`), over --seeds. Finished runs are "
                    "reused, so rerunning the command resumes the sweep. Writes <out>/sweep-<model>-<data>-<hash>/ "
                    "with sweep.csv, phase.png, phase_width.json and hparams.png.")
    add_config_flags(p, skip=_VARIED)
    g = p.add_argument_group("the grid")
    g.add_argument("--l1-grid", default="", metavar="GRID",
                   help="causal L1_coeff values: START:STOP:NUM (log-spaced) or a,b,c "
                        "(default: 6 values, one per decade, from 1/100 to 1000 times the preset's L1_coeff)")
    g.add_argument("--sparsity-grid", default="", metavar="GRID",
                   help="global magnitude target sparsities as fractions: a,b,c or START:STOP:NUM (linear) "
                        "(default: the sparsity each causal run reached, paired per seed and L1_coeff)")
    g.add_argument("--seeds", default="0", metavar="LIST", help="seeds, e.g. 0,1,2 (default: 0)")
    g.add_argument("--n-iter-grid", default="", metavar="LIST",
                   help="N_iter values for the hyperparameter study; the first is the main protocol "
                        "(default: --n-iter)")
    g.add_argument("--n-prune-grid", default="", metavar="LIST",
                   help="N_prune values for the hyperparameter study; the first is the main protocol "
                        "(default: --n-prune)")
    g.add_argument("--baselines", default="magnitude,magnitude-matched,random-matched", metavar="LIST",
                   help="baseline curves: any of magnitude, magnitude-matched, random-matched, "
                        "causal-budget (ours: causal's per-layer count, magnitude's choice), magnitude-budget "
                        "(global magnitude at each causal-budget run's sparsity; needs causal-budget), "
                        "unpruned (one unpruned run per seed), or none (default: the first three)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun runs that failed before (e.g. an L1_coeff that emptied a layer)")
    p.add_argument("--overwrite", action="store_true", help="recompute every run even if it exists")
    p.add_argument("--verbose", action="store_true", help="show each run's own log lines")
    p.add_argument("--dry-run", action="store_true", help="print the planned causal runs and exit")
    p.set_defaults(handler=handle)


def spec_from_args(args: argparse.Namespace, base) -> "object":
    from ..errors import ConfigError
    from ..sweep import BASELINES, SweepSpec, parse_grid, parse_ints

    l1 = parse_grid(args.l1_grid, log=True) if args.l1_grid else \
        parse_grid(f"{base.l1_coeff / 100:.12g}:{base.l1_coeff * 1000:.12g}:6", log=True)
    names = dict(zip(BASELINE_FLAGS, BASELINES))
    chosen = [b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"]
    unknown = [b for b in chosen if b not in names]
    if unknown:
        raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(names)} or none")
    return SweepSpec(
        l1_grid=l1, seeds=parse_ints(args.seeds, "--seeds"),
        sparsity_grid=parse_grid(args.sparsity_grid, log=False) if args.sparsity_grid else None,
        n_iter_grid=parse_ints(args.n_iter_grid, "--n-iter-grid"),
        n_prune_grid=parse_ints(args.n_prune_grid, "--n-prune-grid"),
        baselines=tuple(names[b] for b in chosen)).validate()


def handle(args: argparse.Namespace) -> int:
    from ..paths import SweepPaths
    from ..sweep import causal_configs, run_sweep, sweep_dir

    base = resolve_config(args, method="causal")
    spec = spec_from_args(args, base)
    if args.dry_run:
        plan = {"sweep_dir": str(sweep_dir(base, spec)),
                "causal_runs": [str(c.run_dir()) for c in causal_configs(base, spec)],
                "baselines": list(spec.baselines), "l1_grid": list(spec.l1_grid), "seeds": list(spec.seeds)}
        print(json.dumps(plan, indent=2))
        return 0
    rows, out = run_sweep(base, spec, overwrite=args.overwrite, retry_failed=args.retry_failed,
                          log=print if args.verbose else None)
    failed = [r for r in rows if r["status"] != "ok"]
    paths = SweepPaths(out)
    widths = json.loads(paths.phase_width.read_text())["curves"]
    print()
    for name, w in widths.items():
        width = "no drop" if w["width_pp"] is None else f"{w['width_pp']:.1f} pp"
        print(f"{name:<26} transition width {width:>9}  ({w['runs']} runs, "
              f"{w['percent_pruned_range'][0]:.1f}-{w['percent_pruned_range'][1]:.1f}% pruned)")
    if failed:
        print(f"{len(failed)} run(s) failed (kept in sweep.csv with their reason); rerun with --retry-failed "
              "after changing the protocol, e.g. --allow-empty-layers")
    extra = f", {paths.hparams_png.name}" if paths.hparams_png.exists() else ""
    print(f"results: {paths.csv}, {paths.phase_png.name}, {paths.phase_width.name}{extra}")
    print(f"report:  causal-prune report --sweep {out} --out {paths.report_html}")
    return 0
