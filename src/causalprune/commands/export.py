"""``causal-prune export RUN``: a run's masks, or its pruned state_dict, as safetensors or .pt."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a run's masks, or its pruned state_dict, as safetensors or .pt",
        description="Write the masks of a run (uint8, 1 = kept; apply with causalprune.load_masks(model, FILE)) "
                    "or its final model with the masks made permanent (plain `weight` keys with zeros, loadable "
                    "with model.load_state_dict into a fresh model of the same configuration), and print the "
                    "run's efficiency figures.")
    p.add_argument("run", metavar="RUN", help="run folder (the one `causal-prune run` printed)")
    p.add_argument("--format", dest="fmt", choices=("safetensors", "pt"), default="safetensors",
                   help="file format (default: safetensors)")
    p.add_argument("--what", choices=("masks", "state_dict"), default="masks",
                   help="masks alone, or the pruned state_dict (default: masks)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="file to write (default: RUN/export/<what>.<format>); must end in .safetensors or .pt")
    p.add_argument("--iteration", type=int, default=None, metavar="N",
                   help="export pruning iteration N (its masks and its rewound weights) instead of the final model")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..results.export import efficiency_lines, export_run

    dest = export_run(args.run, fmt=args.fmt, what=args.what, out=args.out, iteration=args.iteration)
    print(f"wrote {dest}")
    for line in efficiency_lines(args.run, args.iteration):
        print(line)
    return 0
