"""``causal-prune models``: parameter counts of every model for a data set's input shape."""

from __future__ import annotations

import argparse

from ..errors import CausalPruneError

__all__ = ["register", "model_table"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models with their parameter counts for a data set's shape")
    p.add_argument("--dataset", default="cifar10", help="data set whose input shape is used (default: cifar10)")
    p.set_defaults(handler=handle)


def model_table(dataset: str) -> list[dict]:
    import torch

    from ..data import dataset_spec
    from ..models import MODELS, build_model, count_parameters

    rows = []
    for name in MODELS:
        try:
            spec = dataset_spec(dataset, name)
            with torch.device("meta"):  # counts only: no memory, no initialisation cost
                model = build_model(name, spec)
            total, prunable = count_parameters(model)
            rows.append({"model": name, "input": str(spec), "params": total, "prunable": prunable, "note": ""})
        except CausalPruneError as exc:
            rows.append({"model": name, "input": "-", "params": None, "prunable": None, "note": str(exc)})
    return rows


def handle(args: argparse.Namespace) -> int:
    rows = model_table(args.dataset)
    print(f"{'model':<15} {'input':<16} {'parameters':>14} {'prunable weights':>17}")
    for r in rows:
        if r["params"] is None:
            print(f"{r['model']:<15} {'-':<16} {'-':>14} {'-':>17}  ({r['note']})")
        else:
            print(f"{r['model']:<15} {r['input']:<16} {r['params']:>14,} {r['prunable']:>17,}")
    return 0
