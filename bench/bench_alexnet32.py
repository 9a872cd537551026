"""One pruning phase of the 32-pixel AlexNet (23.2M prunable weights) under an 8 GB record budget.

At the paper's T = 980 steps (10 epochs x 98 of 512 CIFAR-sized images) the bf16 recording is
980 x 23.2M x 2 B = 45 GB: more than this machine's memory. With ``--record-budget 8GB`` the
recorder spills it to a file in large chunks (two in memory) and the Lasso reads it through a
memory map (record/spill.py). Input: synthetic 3x32x32 blobs (``--dataset synthetic``), SGD lr 1e-3.

``make bench`` measures a *short* phase: the recorder is created for T = 980 (so the spill
decision and the disk check are the real ones), records T_short steps, the spill file is
evicted from the page cache, and the Lasso runs one epoch cold (read from disk), then one and
three epochs warm, which separates its fixed cost per call from its cost per sample. The
figures for T = 980 are extrapolated, labelled as such: training and recording per step x 980,
and the fixed cost plus 3 x 979 samples at the cold per-sample cost (the 33 GB of the largest
layer cannot stay in the page cache, so every epoch reads it from disk). Memory does not grow with T (only
the 8 B loss per step), so the measured peak is the T = 980 peak.

``--full-t`` runs the whole T = 980 phase for real (3 Lasso epochs; about 45 GB of disk; the
batch may be smaller than 512 to save time -- the recording does not depend on it) and writes
bench/alexnet32_full.json, which bench/run.py then quotes. ``--full-t --simulate`` moves the
weights by a fixed random step instead of training: the recorder, the 42 GB spill and the Lasso
from the memory map are exercised at full size in minutes instead of hours.

    .venv/bin/python bench/bench_alexnet32.py [--quick] [--full-t [--batch 16]]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchutil import MemorySampler, cycle_batches, goal, machine, median, sgd_step, warm_lasso

from causalprune.config import Config
from causalprune.data import load_data
from causalprune.masks import apply_masks, ones_masks
from causalprune.methods import causal_decision
from causalprune.models import build_model
from causalprune.record.recorder import Recorder
from causalprune.record.spill import evict_from_cache

__all__ = ["run", "markdown", "goals", "run_full", "FULL_JSON"]

T_PAPER, STEPS_PER_EPOCH, LR = 980, 98, 1e-3
BUDGET = 8 * 1024**3
FULL_JSON = Path(__file__).resolve().parent / "alexnet32_full.json"
GB = 1024**3


def _setup(batch: int, steps: int):
    data = load_data("synthetic", model="alexnet32", batch_size=batch, seed=0, synthetic_shape=(3, 32, 32),
                     synthetic_samples=int(STEPS_PER_EPOCH * batch / 0.9) + 1 if steps > 20 else batch * (steps + 2))
    torch.manual_seed(0)
    model = build_model("alexnet32", data.spec)
    masks = ones_masks(model)
    apply_masks(model, masks)
    return data, model, masks


class _Timed:
    """Wraps the recorder's after_step to time it (the rest of the step is training)."""

    def __init__(self, rec: Recorder):
        self.rec, self.times = rec, []

    def after_step(self, loss):
        t0 = time.perf_counter()
        self.rec.after_step(loss)
        self.times.append(time.perf_counter() - t0)


def _phase(batch: int, steps: int, lasso_epochs: tuple[int, ...], folder: Path, log=print,
           reserve: int = T_PAPER, budget: int = BUDGET, simulate: bool = False) -> dict:
    """Record ``steps`` steps (recorder sized for ``reserve`` steps, T_PAPER by default) and run the
    Lasso once per entry of ``lasso_epochs`` (the first one cold). Returns timings and memory.
    ``simulate``: the weights move by a fixed random step instead of training (recorder, spill and
    Lasso unchanged; their costs do not depend on the values)."""
    data, model, masks = _setup(batch, steps)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    its = cycle_batches(data.train, seed=1)
    sgd_step(model, opt, *next(its))  # warm-up, not recorded
    warm_lasso()
    res: dict = {"batch_size": batch, "steps": steps, "lasso": []}
    with MemorySampler(interval=0.05) as mem:
        rec = Recorder(model, masks, lr=LR, max_steps=max(reserve, steps), budget_bytes=budget,
                       spill_path=folder / "recording" / "iter_01.rank0.spill")
        log(rec.describe())
        res.update(width=rec.width, describe=rec.describe(), spilled=rec.spill is not None,
                   recorder_peak_bytes=rec.peak_bytes())
        timer, step_s, t_start = _Timed(rec), [], time.perf_counter()
        moves = [torch.randn_like(p) * 1e-4 for p in model.parameters()] if simulate else []
        for t in range(steps):
            t0 = time.perf_counter()
            if simulate:
                with torch.no_grad():
                    torch._foreach_add_(list(model.parameters()), moves)
                timer.after_step(torch.tensor(1.0 + 0.01 * ((t * 7919) % 101)))
            else:
                sgd_step(model, opt, *next(its), callbacks=[timer])
            step_s.append(time.perf_counter() - t0)
            if steps > 20 and (t + 1) % 49 == 0:
                log(f"step {t + 1}/{steps}: {time.perf_counter() - t_start:.0f} s")
        t0 = time.perf_counter()
        rec.deltas()  # the last chunk goes out; the file is closed and mapped
        res.update(record_s=time.perf_counter() - t_start, flush_s=time.perf_counter() - t0,
                   step_s=median(step_s), after_step_s=median(timer.times),
                   file_bytes=rec.spill.file_bytes() if rec.spill else 0)
        if rec.spill is not None:
            evict_from_cache(rec.spill.path)
        for k, epochs in enumerate(lasso_epochs):
            t0 = time.perf_counter()
            keep, _ = causal_decision(rec, Config(lasso_epochs=epochs), torch.Generator().manual_seed(k))
            secs = time.perf_counter() - t0
            res["lasso"].append({"epochs": epochs, "seconds": secs, "cold": k == 0,
                                 "s_per_sample": secs / (epochs * (rec.steps - 1))})
            log(f"Lasso, {epochs} epoch(s){' from a cold page cache' if k == 0 else ''}: {secs:.1f} s")
        res["pruned_pct"] = 100.0 * (1 - sum(int(v.sum()) for v in keep.values()) / rec.width)
        rec.free()
    res.update(peak_anon=mem.peak_anon, peak_file=mem.peak_file, hwm=mem.hwm, start_anon=mem.start.get("RssAnon", 0),
               file_left=(folder / "recording").exists())
    return res


def _lasso_model(lasso: list[dict], n: int) -> dict:
    """Split the Lasso's time into a fixed part per call (features, masks) and a cost per sample,
    from a cold 1-epoch run, a warm 1-epoch run and a warm 3-epoch run over n samples."""
    cold1, warm1, warm3 = (r["seconds"] for r in lasso)
    per_warm = (warm3 - warm1) / (2 * n)
    if per_warm <= 0:  # too noisy to separate: charge everything per sample (an upper bound)
        return {"fixed_s": 0.0, "warm_s": warm1 / n, "cold_s": cold1 / n}
    fixed = max(warm1 - n * per_warm, 0.0)
    return {"fixed_s": fixed, "warm_s": per_warm, "cold_s": max(cold1 - fixed, 0.0) / n}


def run(quick: bool = False) -> dict:
    """A short pruning phase; figures for T = 980 extrapolated from it."""
    batch, steps = (8, 3) if quick else (512, 4)
    with tempfile.TemporaryDirectory(prefix="causalprune-alexnet32-") as tmp:
        # The smoke run sizes the spill for its own few steps (reserving T_PAPER needs ~45 GB of
        # disk) and shrinks the budget to 128 MB (3 rows need 139 MB) so that it still goes through the spill path.
        res = _phase(batch, steps, (1, 1, 3), Path(tmp), log=lambda m: None,
                     reserve=steps if quick else T_PAPER, budget=128 * 2**20 if quick else BUDGET)
    model = _lasso_model(res["lasso"], steps - 1)
    lasso_s = model["fixed_s"] + 3 * (T_PAPER - 1) * model["cold_s"]
    res.update(quick=quick, T_paper=T_PAPER, budget=BUDGET, lasso_model=model, extrapolated={
        "record_s": T_PAPER * res["step_s"], "lasso_s": lasso_s, "file_bytes": T_PAPER * res["width"] * 2,
        "total_s": T_PAPER * res["step_s"] + lasso_s})
    if FULL_JSON.exists():
        res["full_run"] = json.loads(FULL_JSON.read_text())
    return res


def run_full(batch: int, spill_dir: str | None = None, simulate: bool = False) -> dict:
    """The whole T = 980 phase with 3 Lasso epochs; writes FULL_JSON."""
    from causalprune.storage import write_json

    folder = Path(tempfile.mkdtemp(prefix="causalprune-alexnet32-full-", dir=spill_dir))
    t0 = time.perf_counter()
    try:
        res = _phase(batch, T_PAPER, (3,), folder, simulate=simulate,
                     log=lambda m: print(f"[{time.perf_counter() - t0:7.0f} s] {m}", flush=True))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = "python bench/bench_alexnet32.py --full-t " + ("--simulate" if simulate else f"--batch {batch}")
    res.update(total_s=time.perf_counter() - t0, machine=machine(), simulated=simulate, command=command)
    write_json(FULL_JSON, res)
    return res


def goals(res: dict) -> list[dict]:
    out = [goal("AlexNet32 pruning phase, whole-process peak anonymous memory (8 GB record budget)",
                res["peak_anon"] / GB, BUDGET / GB, unit=" GB", fmt="{:.2f}",
                note=f"T = {res['steps']} measured; memory does not grow with T"),
           goal("AlexNet32 pruning phase at T = 980, time (extrapolated, 2-core CPU)",
                res["extrapolated"]["total_s"] / 60, None, unit=" min", fmt="{:.0f}")]
    full = res.get("full_run")
    if full:
        out.append(goal(f"AlexNet32 full T = 980 run ({full['machine']['date']}), peak anonymous memory",
                        full["peak_anon"] / GB, BUDGET / GB, unit=" GB", fmt="{:.2f}",
                        note=f"{full['total_s'] / 60:.0f} min at batch {full['batch_size']}"))
    return out


def _full_md(f: dict) -> list[str]:
    la = f["lasso"][0]
    how = ("weights moved by a fixed random step instead of training: recorder, spill and Lasso as in a run"
           if f.get("simulated") else f"batch {f['batch_size']}")
    return ["", f"**Full T = 980 run** (`{f['command']}`, {f['machine']['date']}, {f['machine']['cpu']}, "
            f"load average {f['machine']['load_average'][0]:.1f}): recording {f['record_s'] / 60:.1f} min "
            f"({how}; {f['after_step_s'] * 1e3:.0f} ms of each step in the recorder), "
            f"{f['file_bytes'] / GB:.1f} GB spilled, Lasso {la['seconds'] / 60:.1f} min "
            f"({la['s_per_sample'] * 1e3:.0f} ms / sample, 3 epochs), total {f['total_s'] / 60:.1f} min; "
            f"peak anonymous memory {f['peak_anon'] / GB:.2f} GB, peak file-backed (page cache of the map) "
            f"{f['peak_file'] / GB:.2f} GB; {f['pruned_pct']:.1f}% pruned; spill file removed: "
            f"{'yes' if not f['file_left'] else 'NO'}."]


def markdown(res: dict) -> str:
    """The section of BENCHMARKS.md."""
    ex, lm = res["extrapolated"], res["lasso_model"]
    lines = [f"alexnet32 ({res['width']:,} prunable weights), synthetic 3x32x32, batch {res['batch_size']}, "
             f"`--record-budget 8GB`. Recorder: {res['describe']}." + (" Quick run." if res["quick"] else ""), "",
             "| | measured (T = %d) | T = 980 (extrapolated) |" % res["steps"], "|---|---:|---:|",
             f"| SGD step incl. recorder, s | {res['step_s']:.2f} | {ex['record_s'] / 60:.1f} min |",
             f"| of which recorder `after_step` (incl. chunk writes), s | {res['after_step_s']:.3f} | |",
             f"| spill file | {res['file_bytes'] / GB:.2f} GB | {ex['file_bytes'] / GB:.1f} GB |",
             f"| Lasso, s / sample, cold (from disk) | {lm['cold_s']:.3f} | {ex['lasso_s'] / 60:.1f} min "
             "(3 x 979 samples) |",
             f"| Lasso, s / sample, warm (page cache) | {lm['warm_s']:.3f} | |",
             f"| Lasso, fixed s per call (features, masks) | {lm['fixed_s']:.2f} | same |",
             f"| **pruning phase** | | **{ex['total_s'] / 60:.0f} min** |",
             f"| peak anonymous memory, whole process | {res['peak_anon'] / GB:.2f} GB | same (+8 B / step) |",
             f"| peak file-backed memory (mapped spill file; reclaimable) | {res['peak_file'] / GB:.2f} GB | |",
             f"| recorder's own memory (accounted) | {res['recorder_peak_bytes'] / GB:.2f} GB | same |",
             "", f"Spill file deleted after the Lasso: {'yes' if not res['file_left'] else 'NO'}."]
    if res.get("full_run"):
        lines += _full_md(res["full_run"])
    else:
        lines += ["", "No full T = 980 run recorded yet (`python bench/bench_alexnet32.py --full-t --simulate`, "
                  "or with training: `--full-t --batch 16`, hours on 2 cores)."]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny batch, 3 steps (smoke run)")
    ap.add_argument("--full-t", action="store_true", help="the whole T = 980 phase (tens of minutes, ~45 GB disk)")
    ap.add_argument("--batch", type=int, default=512, help="batch size of --full-t")
    ap.add_argument("--spill-dir", default=None, help="folder for the ~45 GB spill file of --full-t (default: $TMPDIR)")
    ap.add_argument("--simulate", action="store_true",
                    help="--full-t without training: the weights move by a fixed random step (minutes, not hours)")
    ap.add_argument("--json", action="store_true", help="also print the raw result as JSON")
    args = ap.parse_args()
    if args.full_t:
        result = run_full(args.batch, args.spill_dir, args.simulate)
        print(json.dumps(result, indent=2, default=str))
        sys.exit(0)
    result = run(quick=args.quick)
    print(markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
