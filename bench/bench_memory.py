"""Memory of the recording, and the cost of a later iteration that records only unpruned weights.

1. Bytes held by the recorder per recorded step per unpruned weight, LeNet (431,080 prunable
   weights on Fashion-MNIST), bf16: from the recorder's accounting of every tensor it holds
   (``peak_bytes``: ``after_step`` allocates nothing beyond it), and, as a check, from the
   process's measured peak anonymous memory while recording.
2. Iteration 1 (all weights live) against iteration 2 at ~50% sparsity (a magnitude mask):
   the recorded width, the bytes, the recorder's time per step and the Lasso's time, side by
   side in one process. The Lasso is ``causal_decision`` (reference solver, 3 epochs, per layer).
3. The same recording over a small ``--record-budget``: spilled to a file, two chunks in memory.

Weight updates are simulated (a fixed random step per weight and step; no training): the
recorder's and the solver's costs depend on the number of live weights, not on the values.

    .venv/bin/python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from benchutil import MemorySampler, goal, median, one_thread, section_main, warm_lasso

from causalprune.config import Config
from causalprune.data import dataset_spec
from causalprune.masks import apply_masks, ones_masks, weight_of
from causalprune.methods import causal_decision
from causalprune.models import build_model, prunable_layers
from causalprune.record.recorder import Recorder

__all__ = ["run", "markdown", "goals"]

LR = 1e-3
PAPER_T = 1060  # 10 epochs x 106 steps of 512 (LeNet / Fashion-MNIST)


def _record(model, masks, T: int, *, budget: int | None = None, spill: Path | None = None) -> tuple[Recorder, dict]:
    """Record T simulated steps; returns the recorder and its timings / memory."""
    mods = prunable_layers(model)
    steps = [torch.randn_like(weight_of(m)) * 1e-4 for m in mods.values()]
    losses = torch.randn(T, dtype=torch.float64) * 0.05 + 1.0
    with MemorySampler() as mem:
        rec = Recorder(model, masks, lr=LR, max_steps=T, dtype="bf16", budget_bytes=budget, spill_path=spill)
        times = []
        with torch.no_grad(), one_thread():
            for t in range(T):
                for m, s in zip(mods.values(), steps):
                    weight_of(m).add_(s)
                t0 = time.perf_counter()
                rec.after_step(losses[t])
                times.append(time.perf_counter() - t0)
    return rec, {"width": rec.width, "step_ms": median(times) * 1e3, "held": rec.held_bytes(),
                 "peak": rec.peak_bytes(), "measured": mem.grown_anon()}


def _lasso(recs: list[Recorder], repeats: int) -> list[float]:
    """Median Lasso seconds of each recorder, the recorders' runs alternating (side by side)."""
    times = [[] for _ in recs]
    for k in range(repeats):
        for rec, ts in zip(recs, times):
            t0 = time.perf_counter()
            causal_decision(rec, Config(), torch.Generator().manual_seed(k))
            ts.append(time.perf_counter() - t0)
    return [median(ts) for ts in times]


def _half_mask(model) -> dict:
    """Keep the larger half of the weights by magnitude (one global threshold)."""
    ws = {f"{n}.weight": weight_of(m).detach().abs() for n, m in prunable_layers(model).items()}
    thr = torch.cat([w.reshape(-1) for w in ws.values()]).median()
    return {k: (w > thr).to(torch.uint8) for k, w in ws.items()}


def run(quick: bool = False) -> dict:
    """Memory per step per weight, iteration 1 vs 2 at ~50% sparsity, and the spilled mode."""
    T, repeats = (30, 1) if quick else (400, 3)
    torch.manual_seed(0)
    model = build_model("lenet", dataset_spec("fashion-mnist", "lenet"))
    dense = ones_masks(model)
    apply_masks(model, dense)
    warm_lasso()
    iters = {}
    rec1, iters["1"] = _record(model, dense, T)
    half = _half_mask(model)
    apply_masks(model, half)
    rec2, iters["2"] = _record(model, half, T)
    iters["1"]["lasso_s"], iters["2"]["lasso_s"] = _lasso([rec1, rec2], repeats)
    iters["2"]["sparsity"] = 1 - rec2.width / iters["1"]["width"]
    rec1.free()
    rec2.free()
    with tempfile.TemporaryDirectory(prefix="causalprune-spill-") as tmp:
        budget = Recorder.bytes_needed(T, iters["2"]["width"]) // 4
        rec, spilled = _record(model, half, T, budget=budget, spill=Path(tmp) / "iter_02.spill")
        spilled.update(budget=budget, file_bytes=rec.spill.file_bytes(), chunk_rows=rec.spill.rows_per_chunk)
        spilled["lasso_s"] = _lasso([rec], 1)[0]
        rec.free()
    D = iters["1"]["width"]
    per = {k: {"data": (v["held"] - 8 * T) / (T * v["width"]), "peak": v["peak"] / (T * v["width"]),
               "measured": v["measured"] / (T * v["width"])} for k, v in iters.items()}
    fixed = (iters["1"]["peak"] - iters["1"]["held"]) / D  # bytes per weight held once, not per step
    return {"quick": quick, "T": T, "width": D, "iterations": iters, "per_step_per_weight": per,
            "fixed_bytes_per_weight": fixed, "peak_at_paper_T": 2 + (fixed + 8 / D * PAPER_T) / PAPER_T,
            "spilled": spilled, "lasso_ratio": iters["2"]["lasso_s"] / iters["1"]["lasso_s"],
            "width_ratio": iters["2"]["width"] / D, "bytes_ratio": iters["2"]["held"] / iters["1"]["held"],
            "step_ratio": iters["2"]["step_ms"] / iters["1"]["step_ms"], "lasso_repeats": repeats}


def goals(res: dict) -> list[dict]:
    per = res["per_step_per_weight"]["1"]
    return [goal("recorded bytes per step per unpruned weight (bf16)", per["data"], 2.0, unit=" B", fmt="{:.3f}"),
            goal(f"all recorder memory per step per weight at T = {PAPER_T}", res["peak_at_paper_T"], None,
                 unit=" B", fmt="{:.3f}", note=f"includes theta_t in fp32 ({res['fixed_bytes_per_weight']:.1f} B "
                 "per weight, held once, not per step)"),
            goal("iteration 2 Lasso time at ~50% sparsity / iteration 1", res["lasso_ratio"], 0.75, unit="x",
                 fmt="{:.2f}", note="ideal 0.50: cost falls with sparsity"),
            goal("iteration 2 recording bytes at ~50% sparsity / iteration 1", res["bytes_ratio"], 0.55, unit="x",
                 fmt="{:.2f}")]


def _mb(b: float) -> str:
    return f"{b / 1024**2:.1f} MB"


def markdown(res: dict) -> str:
    """The section of BENCHMARKS.md."""
    T, it, per, sp = res["T"], res["iterations"], res["per_step_per_weight"], res["spilled"]
    lines = [f"LeNet (Fashion-MNIST shapes), T = {T} simulated steps, bf16, Lasso = reference solver, 3 epochs, "
             f"per layer (median of {res['lasso_repeats']}, the two iterations' runs alternating)."
             + (" Quick run." if res["quick"] else ""), "",
             "| | iteration 1 (all live) | iteration 2 (~50% pruned) | 2 / 1 |", "|---|---:|---:|---:|",
             f"| recorded weights | {it['1']['width']:,} | {it['2']['width']:,} | {res['width_ratio']:.2f} |",
             f"| recording held in memory | {_mb(it['1']['held'])} | {_mb(it['2']['held'])} | "
             f"{res['bytes_ratio']:.2f} |",
             f"| everything the recorder holds (accounted) | {_mb(it['1']['peak'])} | {_mb(it['2']['peak'])} | "
             f"{it['2']['peak'] / it['1']['peak']:.2f} |",
             f"| measured peak anonymous memory growth | {_mb(it['1']['measured'])} | "
             f"{_mb(it['2']['measured'])} | |",
             f"| recorder `after_step`, ms (median, one torch thread) | {it['1']['step_ms']:.2f} | "
             f"{it['2']['step_ms']:.2f} | {res['step_ratio']:.2f} |",
             f"| Lasso, s | {it['1']['lasso_s']:.2f} | {it['2']['lasso_s']:.2f} | {res['lasso_ratio']:.2f} |",
             "", "Bytes per recorded step per unpruned weight:", "",
             "| | iteration 1 | iteration 2 |", "|---|---:|---:|",
             f"| recorded data (the bf16 rows) | {per['1']['data']:.3f} | {per['2']['data']:.3f} |",
             f"| all recorder memory, accounted (T = {T}) | {per['1']['peak']:.3f} | {per['2']['peak']:.3f} |",
             f"| measured (peak anonymous RSS growth) | {per['1']['measured']:.3f} | {per['2']['measured']:.3f} |",
             "", f"Beyond the 2 B per step, the recorder holds {res['fixed_bytes_per_weight']:.1f} B per live weight "
             f"once (theta_t in fp32; in pruned layers also the gather scratch and int64 indices) and 8 B per step "
             f"(the loss): at the paper's T = {PAPER_T} that is {res['peak_at_paper_T']:.3f} B per step per weight.",
             "", f"Spilled (budget {_mb(sp['budget'])} for a {_mb(sp['file_bytes'])} recording): "
             f"{_mb(sp['held'])} held in memory ({sp['chunk_rows']}-row chunks, two of them), "
             f"recorder step {sp['step_ms']:.2f} ms, Lasso from the memory-mapped file {sp['lasso_s']:.2f} s "
             f"(in memory: {it['2']['lasso_s']:.2f} s)."]
    return "\n".join(lines)


if __name__ == "__main__":
    section_main(run, markdown, __doc__, "a short recording (smoke run)")
