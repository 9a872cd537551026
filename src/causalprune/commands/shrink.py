"""``causal-prune shrink RUN``: a physically smaller dense model from a run's structured masks."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shrink", help="build a smaller dense model without the run's pruned channels (plain chains only)",
        description="Delete every channel of the run's final model that its masks make removable (a pruned "
                    "filter, whose constant output moves into the next layer's bias, or an input channel the "
                    "next layer no longer reads), check on real validation inputs that the outputs equal the "
                    "masked model's, and save state_dict + layer widths (load it with "
                    "causalprune.shrink.load_shrunk). Models with residual connections are refused.")
    p.add_argument("run", metavar="RUN", help="a finished run folder")
    p.add_argument("--out", default="", metavar="FILE",
                   help="where to save the model (default: RUN/checkpoints/shrunk.pt; widths in RUN/shrunk.json, "
                        "or FILE with .json for a given FILE)")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="largest allowed max |output difference|, computed in float64 (default: 1e-5)")
    p.add_argument("--samples", type=int, default=256, help="validation inputs to compare on (default: 256)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="where to compute (default: cpu)")
    p.add_argument("--data-dir", default="", metavar="DIR", help="data folder, if it moved since the run")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..structured.shrink import shrink_run

    if args.samples < 1 or not args.tol > 0:
        raise ConfigError("--samples must be >= 1 and --tol > 0")
    rep = shrink_run(args.run, args.out or None, device=args.device, data_dir=args.data_dir, tol=args.tol,
                     samples=args.samples)
    for name, w in rep["layers"].items():
        print(f"{name:<16} {w['type']:<8} in {w['in']:>6}  out {w['out']:>6}")
    pm, ps, mm, ms = rep["params_masked_model"], rep["params_shrunk"], rep["macs_masked_model"], rep["macs_shrunk"]
    print(f"parameters {pm:,} -> {ps:,} ({100 * (1 - ps / pm):.2f}% fewer); MACs per input {mm:,} -> {ms:,} "
          f"({100 * (1 - ms / max(mm, 1)):.2f}% fewer)")
    print(f"max |output difference| {rep['max_abs_diff']:.2e} in float64 ({rep['max_abs_diff_float32']:.2e} in "
          f"float32) on {rep['inputs_checked']} validation inputs; saved {rep['file']}")
    return 0
