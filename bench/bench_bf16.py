"""bf16 against fp32 storage of the recording: how many keep-decisions change.

LeNet on Fashion-MNIST (batch 512): a short Adam pretraining (lr 5e-4) so the weights are not
at their initialisation, then T SGD steps (lr 1e-3) recorded in fp32. The Lasso
(``causal_decision``: reference solver, 3 epochs, per layer, the same shuffling seed) runs
once on that recording and once on the same rows cast to bf16 -- bit for bit what a bf16
recording stores, since the recorder computes each row in fp32 and casts it. Reported: the
share of weights whose keep decision differs, at the paper's L1_coeff and at larger ones
(which prune more, so more decisions sit near the threshold).

    .venv/bin/python bench/bench_bf16.py [--quick]
"""

from __future__ import annotations

import time

import torch
from benchutil import cycle_batches, goal, lenet_data, section_main, sgd_step, warm_lasso

from causalprune.config import Config
from causalprune.masks import apply_masks, ones_masks
from causalprune.methods import causal_decision
from causalprune.models import build_model
from causalprune.record.recorder import Recorder

__all__ = ["run", "markdown", "goals"]

L1S = (1e-14, 1e-13, 1e-12)  # the paper's value for LeNet / Fashion-MNIST, then 10x and 100x
GOAL_PCT = 1.0


def _decisions(rec: Recorder, l1: float, seed: int) -> dict:
    keep, _ = causal_decision(rec, Config(l1_coeff=l1), torch.Generator().manual_seed(seed))
    return {k: v.bool().reshape(-1) for k, v in keep.items()}


def _compare(a: dict, b: dict) -> dict:
    total = sum(v.numel() for v in a.values())
    differ = sum(int((a[k] ^ b[k]).sum()) for k in a)
    per_layer = {k: 100.0 * int((a[k] ^ b[k]).sum()) / a[k].numel() for k in a}
    pruned = {name: 100.0 * (1 - sum(int(v.sum()) for v in m.values()) / total)
              for name, m in (("fp32", a), ("bf16", b))}
    return {"differ": differ, "total": total, "differ_pct": 100.0 * differ / total, "per_layer_pct": per_layer,
            "pruned_pct": pruned}


def run(quick: bool = False) -> dict:
    """Record once in fp32; compare the masks of the fp32 and the bf16-cast recordings."""
    batch, pre, T = (64, 3, 24) if quick else (512, 10, 80)
    data = lenet_data(quick, batch)
    torch.manual_seed(0)
    model = build_model("lenet", data.spec)
    masks = ones_masks(model)
    apply_masks(model, masks)
    its = cycle_batches(data.train, seed=7)
    adam = torch.optim.Adam(model.parameters(), lr=5e-4)
    for _ in range(pre):
        sgd_step(model, adam, *next(its))
    rec = Recorder(model, masks, lr=1e-3, max_steps=T, dtype="fp32")
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(T):
        sgd_step(model, sgd, *next(its), callbacks=[rec])
    fp32, bf16 = rec.buffer, rec.buffer.to(torch.bfloat16)
    warm_lasso()
    out = {}
    for l1 in L1S:
        t0 = time.perf_counter()
        rec.buffer = fp32
        a = _decisions(rec, l1, seed=1)
        rec.buffer = bf16  # the same recorder, its rows as a bf16 recording stores them
        b = _decisions(rec, l1, seed=1)
        out[f"{l1:g}"] = {**_compare(a, b), "seconds": time.perf_counter() - t0}
    rel = (bf16.float() - fp32).abs().max() / fp32.abs().max()
    return {"quick": quick, "data": data.name, "batch_size": batch, "pretrain_steps": pre, "T": T,
            "width": rec.width, "by_l1": out, "paper_l1": f"{L1S[0]:g}", "max_rel_rounding": float(rel)}


def goals(res: dict) -> list[dict]:
    worst = max(r["differ_pct"] for r in res["by_l1"].values())
    paper = res["by_l1"][res["paper_l1"]]["differ_pct"]
    return [goal(f"bf16 vs fp32 recording: keep decisions that differ (L1 {res['paper_l1']})", paper, GOAL_PCT,
                 unit="%", fmt="{:.3f}", note="'nearly unchanged' taken as <= 1% of the weights"),
            goal("bf16 vs fp32 recording: worst over L1 in " + ", ".join(res["by_l1"]), worst, GOAL_PCT,
                 unit="%", fmt="{:.3f}")]


def markdown(res: dict) -> str:
    """The section of BENCHMARKS.md."""
    lines = [f"LeNet on {res['data']}, batch {res['batch_size']}: {res['pretrain_steps']} Adam steps, then "
             f"T = {res['T']} recorded SGD steps ({res['width']:,} weights); the Lasso on the fp32 rows and on "
             f"the same rows cast to bf16 (largest relative rounding {res['max_rel_rounding']:.1e})."
             + (" Quick run." if res["quick"] else ""), "",
             "| L1_coeff | pruned, fp32 | pruned, bf16 | decisions that differ | per layer |",
             "|---|---:|---:|---:|---|"]
    for l1, r in res["by_l1"].items():
        layers = ", ".join(f"{k.removesuffix('.weight')} {v:.2f}%" for k, v in r["per_layer_pct"].items())
        lines.append(f"| {l1}{' (paper)' if l1 == res['paper_l1'] else ''} | {r['pruned_pct']['fp32']:.2f}% | "
                     f"{r['pruned_pct']['bf16']:.2f}% | {r['differ']:,} of {r['total']:,} "
                     f"(**{r['differ_pct']:.3f}%**) | {layers} |")
    return "\n".join(lines)


if __name__ == "__main__":
    section_main(run, markdown, __doc__, "small batches and a short recording (smoke run)")
