"""The prepared GPU check behind bench/gpu_check.sh: tests, Lasso speed and pruning-phase overhead.

GPU mode (a CUDA device is visible; sized to finish in well under 8 minutes on an H100/H200):

1. the CUDA-marked tests (``pytest -m cuda``): no host sync in the solver loops or the recorder's
   step, CPU-vs-CUDA parity of the solvers, the recorder, a spilled recording, CausalPruner and
   a tiny Experiment;
2. the Lasso on CUDA, bf16 x in the paper's regime, at d = 625,500 and 16,781,312 (T = 1,060,
   3 epochs): today's coupled torch path and the coordinate-parallel Triton kernel side by side
   on the same data and visit order; and the whole per-layer Lasso of one LeNet iteration
   (d = 430,500 in four layers);
3. the pruning-phase overhead, (T x recorded SGD step + Lasso) / (T x plain SGD step), for LeNet,
   AlexNet32 and ResNet-18 on CIFAR-shaped input (batch 512, T = 1,060; per-step medians of
   alternating chunks, the Lasso on the recorded rows tiled to T).

4. with ``--data-dir``: one causal run of the study protocol (LeNet, real Fashion-MNIST) end to
   end through the CLI on the GPU, its wall time and accuracy.

Each phase records its error instead of raising, so one failure leaves the others' figures, and
the results so far are written after every phase. It writes bench/results-gpu.json and
regenerates BENCHMARKS.md's GPU section from it (``--publish FILE`` does only that, for a result
brought back from another machine).

CPU mode (no GPU): the same steps on tiny shapes, the solvers' CPU kernels in place of the
Triton one, output under bench/_tmp/gpu-check/ (nothing committed is touched), and one line
saying that the GPU figures were not measured. CI runs this mode, so the script cannot rot.

    python bench/gpu_check.py [--mode auto|gpu|cpu] [--out DIR] [--skip-tests]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchutil import ROOT, machine, median  # noqa: E402
from gpu_report import GPU_JSON  # noqa: E402

from causalprune.storage import read_json, write_json, write_text  # noqa: E402

__all__ = ["SIZES", "lasso_rows", "lenet_lasso", "overhead_row", "main"]

LR = 1e-3  # the pruning phase's SGD learning rate (docs/method.md §3)
L1 = 1e-14  # the paper's LeNet L1_coeff
#: mode -> Lasso sizes (d, T), LeNet's per-layer widths' T, overhead (batch, T, timed chunks, steps per chunk)
SIZES = {
    "gpu": dict(lasso=[(625_500, 1_060), (16_781_312, 1_060)], lenet_T=1_060, batch=512, T=1_060, chunks=6,
                chunk=4, models=("lenet", "alexnet32", "resnet18")),
    "cpu": dict(lasso=[(20_000, 40)], lenet_T=12, batch=2, T=6, chunks=1, chunk=1,
                models=("lenet", "alexnet32", "resnet18")),
}
LENET_LAYERS = [500, 25_000, 400_000, 5_000]  # LeNet on 1x28x28: conv1, conv2, fc1, fc2 = 430,500 weights


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, reps: int = 1) -> tuple[float, object]:
    """(best wall seconds, result), synchronised: a GPU run is timed to its end."""
    best, out = float("inf"), None
    for _ in range(reps):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _paper_data(T: int, d: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ U(0,1)·1e-12 in bf16 (drawn on the device in row chunks), y ~ N(0, 0.05)."""
    g = torch.Generator(device=device).manual_seed(seed)
    X = torch.empty(T, d, dtype=torch.bfloat16, device=device)
    step = max(1, (256 << 20) // (4 * d))
    for i in range(0, T, step):
        X[i:i + step] = torch.rand(min(step, T - i), d, generator=g, device=device).mul_(1e-12)
    return X, torch.randn(T, generator=g, device=device).mul_(0.05)


def lasso_rows(sizes: list[tuple[int, int]], device: str, coord_backend: str) -> list[dict]:
    """Coupled torch path vs the coordinate-parallel solver, same data and visit order."""
    from causalprune.solvers import lasso_sgd

    rows = []
    for d, T in sizes:
        X, y = _paper_data(T, d, device)
        res, best = {}, {}
        for _ in range(2):
            for name, backend in (("coupled", "torch"), ("coord", coord_backend)):
                s, g = _timed(lambda b=backend: lasso_sgd(X, y, L1, generator=torch.Generator().manual_seed(0),
                                                          backend=b))
                best[name], res[name] = min(best.get(name, float("inf")), s), g
        n = 3 * T
        rows.append(dict(d=d, T=T, epochs=3, coupled_us=best["coupled"] / n * 1e6, coord_us=best["coord"] / n * 1e6,
                         coord_s=best["coord"], coupled_s=best["coupled"], ratio=best["coupled"] / best["coord"],
                         identical=bool(torch.equal(res["coupled"], res["coord"])),
                         kept=float((res["coord"] != 0).float().mean())))
    return rows


def lenet_lasso(T: int, device: str) -> dict:
    """The whole Lasso of one LeNet iteration: one fit per layer (square features, scale lr²)
    on column slices of one (T+1, 430,500) bf16 recording, as the causal method runs them."""
    from causalprune.solvers import FeatureBlock, solve_reference

    X, y = _paper_data(T + 1, sum(LENET_LAYERS), device)
    X.mul_(1e9)  # stored Δθ/lr ~ 1e-3: features lr²·(Δθ/lr)² ≈ 1e-12
    y = y[:T]
    bounds = torch.tensor([0, *LENET_LAYERS]).cumsum(0).tolist()

    def fit():
        return [solve_reference([FeatureBlock(X[:, a:b], kind="square", scale=LR**2)], y, L1,
                                generator=torch.Generator().manual_seed(k))[0]
                for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]

    fit()  # compile / load the kernels outside the timing
    s, _ = _timed(fit, reps=3)
    return dict(T=T, d=sum(LENET_LAYERS), layers=LENET_LAYERS, seconds=s)


def _overhead(name: str, device: str, batch: int, T: int, chunks: int, chunk: int) -> dict:
    """(T x recorded step + Lasso) / (T x plain step) for one model on CIFAR-shaped input."""
    from benchutil import sgd_step

    from causalprune.config import Config
    from causalprune.data import dataset_spec
    from causalprune.masks import apply_masks, ones_masks
    from causalprune.methods import causal_decision
    from causalprune.models import build_model
    from causalprune.record.recorder import Recorder

    torch.manual_seed(0)
    model = build_model(name, dataset_spec("synthetic", name, synthetic_shape=(3, 32, 32))).to(device)
    masks = ones_masks(model)
    apply_masks(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=g, device=device)
    labels = torch.randint(0, 10, (batch,), generator=g, device=device)
    rec = Recorder(model, masks, lr=LR, max_steps=T, dtype="bf16", device=torch.device(device))
    plain, recorded = [], []
    for k in range(chunks + 1):  # the first round warms up (allocations, cuDNN autotuning)
        for side in (("plain", "rec") if k % 2 == 0 else ("rec", "plain")):
            cbs = [rec] if side == "rec" else []
            if side == "rec":
                rec.before_step()  # plain steps moved the weights since the last recorded one
            _sync()
            t0 = time.perf_counter()
            for _ in range(chunk):
                sgd_step(model, opt, x, labels, callbacks=cbs)
            _sync()
            if k:
                (recorded if side == "rec" else plain).append((time.perf_counter() - t0) / chunk)
    n = rec.steps
    for start in range(n, T, n):  # tile the recorded rows to T (the Lasso's cost depends on the size only)
        m = min(n, T - start)
        rec.buffer[start:start + m].copy_(rec.buffer[:m])
        rec.losses[start:start + m].copy_(rec.losses[:m])
    rec.steps = T
    causal_decision(rec, Config(), torch.Generator().manual_seed(0))  # kernels compiled outside the timing
    lasso_s, _ = _timed(lambda: causal_decision(rec, Config(), torch.Generator().manual_seed(0)))
    width = rec.width
    rec.free()
    step_plain, step_rec = median(plain), median(recorded)
    return dict(model=name, width=width, batch=batch, T=T, step_plain_s=step_plain, step_recorded_s=step_rec,
                lasso_s=lasso_s, overhead=(T * step_rec + lasso_s) / (T * step_plain))


def overhead_row(name: str, mode: str, device: str) -> dict:
    """One model's overhead at this mode's sizes; the GPU's cache is emptied after it (the
    recording of ResNet-18 at batch 512 takes up to 49 GB)."""
    st = SIZES[mode]
    try:
        return _overhead(name, device, st["batch"], st["T"], st["chunks"], st["chunk"])
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


#: the end-to-end run: the study's protocol at its stable L1_coeff, one seed (results/README.md)
E2E_ARGS = ["run", "--preset", "study", "--method", "causal", "--l1-coeff", "1e-15", "--seed", "0"]


def e2e_row(device: str, data_dir: Path, out: Path, log: Path) -> dict:
    """One causal run of the study protocol on real Fashion-MNIST through the CLI, on ``device``:
    its wall time, sparsity and test accuracy (to set beside the CPU study's seed-0 run)."""
    cmd = [sys.executable, "-m", "causalprune", *E2E_ARGS, "--device", device, "--data-dir", str(data_dir),
           "--out", str(out), "--no-share-pretraining"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    write_text(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"the end-to-end run exited with {proc.returncode}; see {log.name}")
    (summary,) = out.glob("*/summary.json")
    s = read_json(summary)
    return {"command": "causal-prune " + " ".join(E2E_ARGS), "wall_s": wall, "percent_pruned": s["percent_pruned"],
            "test_accuracy": s["test_accuracy"], "iterations": [
                {k: it[k] for k in ("percent_pruned", "record_seconds", "lasso_seconds")} for it in s["iterations"]]}


def _run_tests(mode: str, log: Path) -> str:
    """The CUDA-marked tests; their pytest summary line (on a CPU they are all skipped). The whole
    pytest output goes to ``log``; a failure raises with the summary."""
    files = ["tests/test_cuda_path.py", "tests/test_scope_solvers.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    write_text(log, proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else f"pytest exited with {proc.returncode}"
    if proc.returncode not in (0, 5):  # 5: every test deselected
        raise RuntimeError(f"CUDA-marked tests failed ({mode} mode): {summary}; see {log.name}")
    return summary


def _phase(res: dict, key: str, fn, json_path: Path, t0: float) -> None:
    """Run one phase into ``res[key]``; an error is recorded (not raised) so that the phases after
    it still run on a machine lent for minutes, and the results so far are written at once (a
    check stopped at its time limit still leaves them)."""
    try:
        res[key] = fn()
    except Exception as exc:  # noqa: BLE001 -- reported in the results and the exit status
        res.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"[:2000]
        print(f"[gpu_check] {key} FAILED: {res['errors'][key]}", file=sys.stderr, flush=True)
    print(f"[gpu_check] {key} done at {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    write_json(json_path, {**res, "seconds": time.perf_counter() - t0})


def _render(res: dict, md_path: Path, commit: bool) -> Path:
    """BENCHMARKS.md regenerated with this GPU section (the rest from the CPU suite's results.json);
    ``commit``: also store the section in bench/results.json."""
    from run import render

    results = read_json(HERE / "results.json")
    results["gpu"] = res
    write_text(md_path, render(results))
    if commit:
        write_json(HERE / "results.json", results)
    return md_path


def publish(path: Path, note: str | None = None) -> int:
    if not path.is_file():
        print(f"gpu_check: {path} does not exist; pass the results-gpu.json a GPU-mode run wrote", file=sys.stderr)
        return 2
    res = read_json(path)
    if res.get("mode") != "gpu" or "goals" not in res:
        print(f"gpu_check: {path} is not a finished GPU-mode result (mode {res.get('mode')!r}); "
              "publish only what `gpu_check.sh --mode gpu` finished", file=sys.stderr)
        return 2
    if note:
        res["note"] = note
    write_json(GPU_JSON, res)
    md = _render(res, ROOT / "BENCHMARKS.md", commit=True)
    print(f"[gpu_check] published {path} as {GPU_JSON.relative_to(ROOT)} and regenerated {md.name}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("auto", "gpu", "cpu"), default="auto")
    ap.add_argument("--out", type=Path, help="folder for results-gpu.json and BENCHMARKS.md "
                    "(gpu mode: bench/ and the repository's BENCHMARKS.md; cpu mode: bench/_tmp/gpu-check/)")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the CUDA-marked tests")
    ap.add_argument("--data-dir", type=Path, help="gpu mode: Fashion-MNIST's IDX files; adds one causal run of "
                    "the study protocol end to end on the GPU (skipped without it)")
    ap.add_argument("--publish", type=Path, metavar="JSON",
                    help="measure nothing: take a results-gpu.json written by a GPU-mode run elsewhere (a "
                    "remote GPU machine, with --out) as bench/results-gpu.json and regenerate BENCHMARKS.md")
    ap.add_argument("--note", help="with --publish: a note printed under the figures (what explains a failure "
                    "or a missed goal, found after the run)")
    args = ap.parse_args(argv)
    if args.publish:
        return publish(args.publish, args.note)
    mode = args.mode if args.mode != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
    if mode == "gpu" and not torch.cuda.is_available():
        print("gpu_check: --mode gpu needs a CUDA device; none is visible", file=sys.stderr)
        return 2
    device = "cuda" if mode == "gpu" else "cpu"
    t0 = time.perf_counter()
    st = SIZES[mode]
    m = machine()
    res = {"mode": mode, "device": m["gpu"] if mode == "gpu" else f"CPU ({m['cpu']})", "date": m["date"],
           "commit": m["commit"], "torch": m["torch"]}
    out = args.out or (HERE if mode == "gpu" else HERE / "_tmp" / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / GPU_JSON.name
    if args.skip_tests:
        res["tests"] = "not run (--skip-tests)"
    else:
        _phase(res, "tests", lambda: _run_tests(mode, out / "cuda-tests.log"), json_path, t0)
        res.setdefault("tests", "FAILED: " + res.get("errors", {}).get("tests", "?"))
    _phase(res, "lasso", lambda: lasso_rows(st["lasso"], device, "triton" if mode == "gpu" else "numba"),
           json_path, t0)
    _phase(res, "lenet_lasso", lambda: lenet_lasso(st["lenet_T"], device), json_path, t0)
    res["overhead"] = []
    for name in st["models"]:  # one phase per model: an out-of-memory ResNet-18 keeps LeNet's figure
        _phase(res, f"overhead_{name}", lambda n=name: overhead_row(n, mode, device), json_path, t0)
        if f"overhead_{name}" in res:
            res["overhead"].append(res.pop(f"overhead_{name}"))
    if mode == "gpu" and args.data_dir:
        e2e = out / "e2e-runs"
        shutil.rmtree(e2e, ignore_errors=True)  # a fresh run, not a resumed one: its wall time is the figure
        _phase(res, "e2e", lambda: e2e_row(device, args.data_dir, e2e, out / "e2e.log"), json_path, t0)
        shutil.rmtree(e2e, ignore_errors=True)  # checkpoints and masks: not results
    res["seconds"] = time.perf_counter() - t0
    big = [r for r in res.get("lasso", []) if r["d"] == 16_781_312]
    by = {r["model"]: r["overhead"] for r in res.get("overhead", [])}
    res["goals"] = {"lenet_lasso_ms": res["lenet_lasso"]["seconds"] * 1e3 if "lenet_lasso" in res else None,
                    "us_per_sample_16m": big[0]["coord_us"] if big else None,
                    "overhead_lenet": by.get("lenet"), "overhead_alexnet32": by.get("alexnet32"),
                    "overhead_resnet18": by.get("resnet18")}
    write_json(json_path, res)
    committed = mode == "gpu" and args.out is None
    md_path = _render(res, ROOT / "BENCHMARKS.md" if committed else out / "BENCHMARKS.md", committed)
    print(f"[gpu_check] wrote {json_path} and {md_path} in {res['seconds']:.0f} s", file=sys.stderr)
    if res.get("errors"):
        print(f"gpu_check: {len(res['errors'])} phase(s) failed: {', '.join(res['errors'])}; "
              f"the errors are in {json_path}", file=sys.stderr)
        return 1
    if mode == "cpu":
        print("GPU figures were not measured: no CUDA device is visible, so this was the CPU mode on tiny shapes "
              "(it checks the script's code paths, not the GPU goals).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
