"""``causal-prune``: the command line. Each subcommand lives in ``causalprune.commands.<name>``
and exposes ``register(subparsers)``; this module only dispatches and turns user errors into
one-line messages."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import CausalPruneError

__all__ = ["main", "build_parser", "COMMANDS"]

# Subcommand modules, in the order `causal-prune --help` lists them.
COMMANDS = ["run", "compare", "table2", "models", "sweep", "study", "masks", "runs", "analyze", "report", "export",
            "shrink"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to look), like our other errors."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="causal-prune",
        description="Granger-causal pruning of neural networks (Shah et al.): record SGD, fit a per-weight "
                    "Lasso, prune the weights that do not cause loss reduction.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"causalprune.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CausalPruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last finished stage", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`causal-prune ... | head`): stop quietly, as other Unix tools do,
        # and keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
