"""Subcommands of ``causal-prune``; see ``causalprune.cli.COMMANDS``."""
