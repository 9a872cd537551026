"""Seconds per training epoch of LeNet on Fashion-MNIST: device-resident batches vs DataLoader workers.

One epoch = forward + backward + SGD step over every training batch (batch 512, as in the paper),
on the CPU, both pipelines in the same process, their steps interleaved in chunks so that a drift in
the machine's load hits both alike. Also reported: the pipeline alone (an epoch of
batches without a model), which is the overhead the training step has to hide.

    .venv/bin/python bench/bench_pipeline.py [--quick]

``quick=True`` times the first few hundred samples only (synthetic 1x28x28 data if Fashion-MNIST
is not installed) and extrapolates to a full epoch; it finishes in well under 30 s.
"""

from __future__ import annotations

import time

import torch

from causalprune.data import load_data
from causalprune.errors import DataError
from causalprune.models import build_model

__all__ = ["run", "markdown"]

BATCH = 512
QUICK_BATCHES = 3  # "a few hundred samples": 3 x 128
WARMUP_STEPS = 1
CHUNK = 4          # steps of one pipeline before switching to the other
PIPELINES = ("device", "workers")


def _load(pipeline: str, quick: bool):
    kw = dict(model="lenet", batch_size=128 if quick else BATCH, seed=0, pipeline=pipeline, workers=2)
    try:
        return load_data("fashion-mnist", **kw)
    except DataError:
        if not quick:
            raise
        return load_data("synthetic", synthetic_shape=(1, 28, 28), synthetic_samples=600, **kw)


def _step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _interleaved(bundles: dict, models: dict | None, seed: int, max_batches: int | None) -> tuple[dict, dict]:
    """Run one epoch of every pipeline, alternating CHUNK steps of each, and time each pipeline's
    share. Alternating makes the comparison fair on a shared machine whose load drifts."""
    its = {p: iter(b.train.epoch(seed)) for p, b in bundles.items()}
    opts = {p: torch.optim.SGD(m.parameters(), lr=1e-3) for p, m in models.items()} if models else {}
    secs, steps, active = dict.fromkeys(bundles, 0.0), dict.fromkeys(bundles, 0), list(bundles)
    while active:
        for p in list(active):
            t0 = time.perf_counter()
            for _ in range(CHUNK):
                batch = next(its[p], None)
                if batch is None or (max_batches and steps[p] >= max_batches):
                    active.remove(p)
                    break
                if models:
                    _step(models[p], opts[p], *batch)
                steps[p] += 1
            secs[p] += time.perf_counter() - t0
    return secs, steps


def run(quick: bool = False) -> dict:
    """Time both pipelines; returns {"device": {...}, "workers": {...}, plus context}."""
    bundles, res = {}, {}
    for p in PIPELINES:
        t0 = time.perf_counter()
        bundles[p] = _load(p, quick)
        res[p] = {"pipeline": bundles[p].pipeline, "load_s": time.perf_counter() - t0}
    models = {}
    for p, b in bundles.items():
        torch.manual_seed(0)
        models[p] = build_model("lenet", b.spec)
    _interleaved(bundles, models, seed=99, max_batches=WARMUP_STEPS)  # start workers, warm kernels
    limit = QUICK_BATCHES if quick else None
    train_s, steps = _interleaved(bundles, models, seed=1, max_batches=limit)
    data_s, _ = _interleaved(bundles, None, seed=2, max_batches=limit)
    for p, b in bundles.items():
        scale = len(b.train) / steps[p]  # extrapolation to a full epoch (1.0 unless quick)
        res[p].update(steps_timed=steps[p], train_epoch_s=train_s[p] * scale, data_epoch_s=data_s[p] * scale,
                      data=b.name, source=b.source, train_samples=b.train.num_samples,
                      batches_per_epoch=len(b.train), batch_size=b.train.batch_size)
    res.update(quick=quick, torch_threads=torch.get_num_threads(), n_workers=2,
               torch=torch.__version__, extrapolated=quick, chunk=CHUNK)
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
    from benchutil import section_main  # bench/ is on sys.path when run as a script

    section_main(run, markdown, __doc__, "a few hundred samples, < 30 s")
