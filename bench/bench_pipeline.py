"""Seconds per training epoch of LeNet on Fashion-MNIST: device-resident batches vs DataLoader workers.

One epoch = forward + backward + SGD step over every training batch (batch 512, as in the paper),
on the CPU, both pipelines in the same process. Also reported: the pipeline alone (an epoch of
batches without a model), which is the overhead the training step has to hide.

    .venv/bin/python bench/bench_pipeline.py [--quick]

``quick=True`` times the first few hundred samples only (synthetic 1x28x28 data if Fashion-MNIST
is not installed) and extrapolates to a full epoch; it finishes in well under 30 s.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from causalprune.data import load_data
from causalprune.errors import DataError
from causalprune.models import build_model

__all__ = ["run", "markdown"]

BATCH = 512
QUICK_BATCHES = 2  # "a few hundred samples": 2 x 256
WARMUP_STEPS = 2


def _load(pipeline: str, quick: bool):
    kw = dict(model="lenet", batch_size=256 if quick else BATCH, seed=0, pipeline=pipeline, workers=2)
    try:
        return load_data("fashion-mnist", **kw)
    except DataError:
        if not quick:
            raise
        return load_data("synthetic", synthetic_shape=(1, 28, 28), synthetic_samples=600, **kw)


def _time_epoch(bundle, model, max_batches: int | None, train: bool, seed: int) -> tuple[float, int]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    steps, t0 = 0, time.perf_counter()
    for x, y in bundle.train.epoch(seed):
        if train:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        steps += 1
        if max_batches and steps >= max_batches:
            break
    return time.perf_counter() - t0, steps


def _bench_one(pipeline: str, quick: bool) -> dict:
    t0 = time.perf_counter()
    bundle = _load(pipeline, quick)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build_model("lenet", bundle.spec)
    _time_epoch(bundle, model, WARMUP_STEPS, True, seed=99)  # starts the workers, warms the kernels
    limit = QUICK_BATCHES if quick else None
    train_s, steps = _time_epoch(bundle, model, limit, True, seed=1)
    data_s, _ = _time_epoch(bundle, model, limit, False, seed=2)
    scale = len(bundle.train) / steps  # extrapolation to a full epoch (1.0 unless quick)
    return {"pipeline": bundle.pipeline, "load_s": load_s, "steps_timed": steps,
            "train_epoch_s": train_s * scale, "data_epoch_s": data_s * scale,
            "data": bundle.name, "source": bundle.source, "train_samples": bundle.train.num_samples,
            "batches_per_epoch": len(bundle.train), "batch_size": bundle.train.batch_size}


def run(quick: bool = False) -> dict:
    """Time both pipelines; returns {"device": {...}, "workers": {...}, plus context}."""
    res = {p: _bench_one(p, quick) for p in ("device", "workers")}
    res.update(quick=quick, torch_threads=torch.get_num_threads(), n_workers=2,
               torch=torch.__version__, extrapolated=quick)
    return res


def markdown(res: dict) -> str:
    """A small Markdown table of the result of :func:`run`."""
    d = res["device"]
    lines = [
        f"LeNet on {d['data']} ({d['train_samples']} training samples, batch {d['batch_size']}, "
        f"{d['batches_per_epoch']} steps/epoch), CPU, {res['torch_threads']} torch threads"
        + (" -- quick run, extrapolated from the first batches" if res["quick"] else ""),
        "",
        "| pipeline | s / training epoch | s / epoch of batches only | load s |",
        "|---|---:|---:|---:|",
    ]
    for p in ("device", "workers"):
        r = res[p]
        label = p + (" (2 workers)" if p == "workers" else "")
        lines.append(f"| {label} | {r['train_epoch_s']:.2f} | {r['data_epoch_s']:.2f} | {r['load_s']:.2f} |")
    ratio = res["workers"]["train_epoch_s"] / max(res["device"]["train_epoch_s"], 1e-9)
    lines += ["", f"workers / device training-epoch time: {ratio:.2f}x"]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred samples, < 30 s")
    ap.add_argument("--json", action="store_true", help="also print the raw result as JSON")
    args = ap.parse_args()
    result = run(quick=args.quick)
    print(markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
