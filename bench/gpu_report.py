"""The GPU section of BENCHMARKS.md, from bench/results-gpu.json (written by bench/gpu_check.sh on
a GPU machine) or, until such a run, with every GPU figure reading "not measured"."""

from __future__ import annotations

from pathlib import Path

__all__ = ["GPU_JSON", "GPU_GOALS", "gpu_section", "gpu_goal_rows"]

GPU_JSON = Path(__file__).resolve().parent / "results-gpu.json"

REFERENCE = """Reference (the authors' version, docs/method.md §8), per Lasso sample (one SGD update of gamma), 3 epochs:

| where | d = 625,500 (LeNet fc1) | d = 16,781,312 (AlexNet fc) |
|---|---:|---:|
| 2-core CPU of our dev machines | 20.5 ms | -- |
| 16-core CPU of the GPU machine | 7.3 ms | -- |
| NVIDIA H200 | 2.34 ms | 18.3 ms |"""

#: (figure, key in results-gpu.json's "goals", target, unit); all "<=".
GPU_GOALS = [
    ("Lasso of one LeNet iteration on a GPU (T = 1,060, d = 430,500, 3 epochs), whole fit", "lenet_lasso_ms", 5.0,
     " ms"),
    ("Lasso on a GPU per visited sample, d = 16,781,312, coordinate-parallel", "us_per_sample_16m", 40.0, " µs"),
    ("pruning-phase overhead on a GPU, LeNet (CIFAR-shaped)", "overhead_lenet", 1.15, "x"),
    ("pruning-phase overhead on a GPU, AlexNet32 (CIFAR-shaped)", "overhead_alexnet32", 1.15, "x"),
    ("pruning-phase overhead on a GPU, ResNet-18 (CIFAR-shaped)", "overhead_resnet18", 1.15, "x"),
]


def _measured(gpu: dict | None) -> dict | None:
    return gpu if gpu and gpu.get("mode") == "gpu" else None


def gpu_goal_rows(gpu: dict | None) -> list[str]:
    """Rows of the goals table: measured on a GPU, or "not measured"."""
    g = _measured(gpu)
    rows = []
    for figure, key, target, unit in GPU_GOALS:
        if g is None or g.get("goals", {}).get(key) is None:
            rows.append(f"| {figure} | not measured | <= {target:g}{unit} | not measured | `bash bench/gpu_check.sh` |")
        else:
            v = g["goals"][key]
            status = "met" if v <= target else "**NOT met**"
            rows.append(f"| {figure} ({g['device']}, {g['date']}) | {v:,.3g}{unit} | <= {target:g}{unit} | {status} "
                        f"| `bash bench/gpu_check.sh` |")
    return rows


def gpu_section(gpu: dict | None) -> str:
    """The body of the GPU section (without its heading)."""
    g = _measured(gpu)
    if g is None:
        return ("**GPU figures: not measured.** No run of `bash bench/gpu_check.sh` on a GPU machine has filled "
                "`bench/results-gpu.json` yet; every GPU figure in the goals table reads \"not measured\" until "
                "one does.\n\n" + REFERENCE)
    out = [f"`bash bench/gpu_check.sh` on {g['device']} ({g['date']}, commit {g['commit']}, torch {g['torch']}; "
           f"{g['seconds']:.0f} s in all). CUDA-marked tests: {g['tests']}.", "",
           *([f"**Failed phases** (their figures are missing below): "
              + "; ".join(f"{k}: {v}" for k, v in g["errors"].items()), ""] if g.get("errors") else []),
           "**Lasso, coupled torch path vs the coordinate-parallel Triton kernel** (bf16 x, same data and visit "
           "order, best of 2 each, synchronised):", "",
           "| d | samples | coupled µs/sample | coordinate µs/sample | coupled / coordinate | whole fit, coordinate "
           "| γ identical |", "|---:|:---|---:|---:|---:|---:|:---|"]
    for r in g["lasso"]:
        out.append(f"| {r['d']:,} | T={r['T']:,} × {r['epochs']} | {r['coupled_us']:,.1f} | {r['coord_us']:,.2f} | "
                   f"{r['ratio']:,.1f}× | {r['coord_s'] * 1e3:,.1f} ms | {'yes' if r['identical'] else '**no**'} |")
    out += ["", "**Pruning-phase overhead** (SGD + recording + Lasso over plain SGD, CIFAR-shaped synthetic input, "
            "batch {b}, T = {T}; per-step medians, the Lasso on the recorded rows tiled to T):".format(
                b=g["overhead"][0]["batch"] if g["overhead"] else "?", T=g["overhead"][0]["T"] if g["overhead"] else "?"),
            "", "| model | prunable weights | plain s/step | recorded s/step | Lasso s | overhead |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in g["overhead"]:
        out.append(f"| {r['model']} | {r['width']:,} | {r['step_plain_s']:.4f} | {r['step_recorded_s']:.4f} | "
                   f"{r['lasso_s']:.3f} | {r['overhead']:.3f}× |")
    if g.get("e2e"):
        e = g["e2e"]
        its = ", ".join(f"{it['percent_pruned']:.1f}% ({it['record_seconds']:.1f} s recorded epochs, "
                        f"{it['lasso_seconds']:.2f} s Lasso)" for it in e["iterations"])
        out += ["", f"**End to end on the GPU**, real Fashion-MNIST, `{e['command']} --device cuda`: "
                f"{e['wall_s']:.0f} s in all (pretraining not shared), {e['percent_pruned']:.2f}% pruned, test "
                f"accuracy {e['test_accuracy']:.2f}%. Iterations: {its}."]
    if g.get("note"):
        out += ["", f"**Note, added when these figures were published:** {g['note']}"]
    return "\n".join(out + ["", REFERENCE])
