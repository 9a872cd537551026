"""Smoke test of the benchmark suite: `bench/run.py --quick` runs every section and writes both files.

The figures of a quick run mean little; what is checked is that every section runs, reports its
keys and goals, and that BENCHMARKS.md is generated whole (machine, goals table, one part per
section, the GPU part). Beyond that, relations the figures must satisfy whatever the machine: every
timing is positive and finite and fits in its section's wall time, every reported ratio is the ratio
of the times it is made of, the recording sizes follow docs/method.md §1 (T x D x 2 bytes in bf16
plus 8 per step, with D counted from the model), and the GPU line states what torch finds on the
machine the test runs on. Sections whose module is not in the tree yet are left out by name.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from run import SECTIONS, render  # noqa: E402

KEYS = {
    "lasso": {"speed", "coord", "scaling", "bandwidth_GBps", "device", "llc_bytes"},
    "overhead": {"overhead_ratio", "overhead_composed", "step_plain_s", "step_recorded_s", "lasso_s", "T", "recorder"},
    "memory": {"per_step_per_weight", "iterations", "lasso_ratio", "bytes_ratio", "spilled", "width_ratio"},
    "bf16": {"by_l1", "T", "width", "paper_l1"},
    "alexnet32": {"width", "peak_anon", "extrapolated", "lasso", "spilled", "file_left"},
    "pipeline": {"device", "workers"},
}
PRESENT = [n for n, (mod, _) in SECTIONS.items() if (BENCH / f"{mod}.py").exists()]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    args = [sys.executable, str(BENCH / "run.py"), "--quick", "--json", str(out / "r.json"), "--md", str(out / "B.md")]
    for name in PRESENT:
        args += ["--only", name]
    # One thread each: the quick sizes gain nothing from two, and a shared machine stays responsive.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    # bench_lasso writes its scaling plot into the tree even when quick: keep the real one.
    png = BENCH / "lasso_scaling.png"
    kept = png.read_bytes() if png.exists() else None
    try:
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        if kept is not None:
            png.write_bytes(kept)
    return proc, json.loads((out / "r.json").read_text()), (out / "B.md").read_text()


@pytest.mark.slow
def test_every_section_runs_and_reports(quick_run):
    proc, res, md = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(res["sections"]) == set(PRESENT) and res["quick"] is True
    for name, sec in res["sections"].items():
        assert sec["error"] is None, (name, sec.get("traceback"))
        assert KEYS.get(name, set()) <= set(sec["result"]), name
        for g in sec["goals"]:
            assert {"figure", "shown", "goal", "met"} <= set(g) and math.isfinite(g["value"])
    assert res["machine"]["cores"] >= 1 and res["machine"]["cpu"]


def _prunable_weights(model: str, spec) -> int:
    """Prunable weights of a model, counted on the meta device (no memory, no init cost)."""
    import torch

    from causalprune.masks import weight_of
    from causalprune.models import build_model, prunable_layers

    with torch.device("meta"):
        net = build_model(model, spec)
    return sum(weight_of(m).numel() for m in prunable_layers(net).values())


def _lenet_weights() -> int:
    from causalprune.data import dataset_spec

    return _prunable_weights("lenet", dataset_spec("fashion-mnist", "lenet"))


def _timings(obj, path: str = ""):
    """(path, value) of every timing in a section's result: keys ending in _s, _ms or _us, or named
    ``seconds`` (numbers or lists of numbers). ``lasso_model`` (a split of timings into parts, one of
    which may be 0) and ``full_run`` (read from a file, not measured by this run) are left out."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("lasso_model", "full_run"):
                continue
            if k == "seconds" or k.endswith(("_s", "_ms", "_us")):
                for x in (v if isinstance(v, list) else [v]):
                    if isinstance(x, (int, float)) and not isinstance(x, bool):
                        yield f"{path}.{k}", x
            if isinstance(v, (dict, list)):
                yield from _timings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _timings(v, f"{path}[{i}]")


@pytest.mark.slow
def test_timings_are_positive_finite_and_fit_in_their_section(quick_run):
    _, res, _ = quick_run
    s = res["sections"]
    for name, sec in s.items():
        found = list(_timings(sec["result"], name))
        assert found, f"{name} reports no timing"
        for where, t in found:
            assert math.isfinite(t) and t > 0, (where, t)
        assert math.isfinite(sec["seconds"]) and sec["seconds"] > 0, name
    # the sections ran one after the other inside the run's own clock
    assert res["total_seconds"] >= sum(sec["seconds"] for sec in s.values())
    # what a section timed inside itself cannot take longer than the section
    if "overhead" in s:
        r = s["overhead"]
        assert sum(r["result"]["lasso_runs_s"]) <= r["seconds"]
    if "memory" in s:
        r = s["memory"]
        it = r["result"]["iterations"]
        assert it["1"]["lasso_s"] + it["2"]["lasso_s"] + r["result"]["spilled"]["lasso_s"] <= r["seconds"]
    if "bf16" in s:
        r = s["bf16"]
        assert sum(row["seconds"] for row in r["result"]["by_l1"].values()) <= r["seconds"]
    if "alexnet32" in s:
        r = s["alexnet32"]
        assert r["result"]["record_s"] + sum(x["seconds"] for x in r["result"]["lasso"]) <= r["seconds"]


@pytest.mark.slow
def test_ratios_are_the_ratios_of_the_reported_times(quick_run):
    _, res, _ = quick_run
    s = res["sections"]
    if "lasso" in s:
        rows = s["lasso"]["result"]["speed"]
        assert rows
        for r in rows:
            assert r["ratio"] == pytest.approx(r["naive_us"] / r["ours_us"], rel=1e-9), r
            assert r["over_floor"] == pytest.approx(r["ours_us"] / r["floor_us"], rel=1e-9), r
        speedups = [g["value"] for g in s["lasso"]["goals"] if g["figure"].startswith("Lasso speed-up")]
        assert speedups and all(any(v == pytest.approx(r["naive_us"] / r["ours_us"], rel=1e-9) for r in rows)
                                for v in speedups)
    if "overhead" in s:
        r = s["overhead"]["result"]
        assert r["sgd_ratio"] == pytest.approx(r["step_recorded_s"] / r["step_plain_s"], rel=1e-9)
        # the overhead is the recorded step's share plus the Lasso's share of the plain epochs
        assert r["overhead_ratio"] == pytest.approx(r["sgd_ratio"] + r["lasso_share"], rel=1e-9)
        assert r["lasso_share"] * r["T"] * r["step_plain_s"] == pytest.approx(r["lasso_s"], rel=1e-9)
    if "memory" in s:
        r = s["memory"]["result"]
        it = r["iterations"]
        assert r["lasso_ratio"] == pytest.approx(it["2"]["lasso_s"] / it["1"]["lasso_s"], rel=1e-9)
        assert r["step_ratio"] == pytest.approx(it["2"]["step_ms"] / it["1"]["step_ms"], rel=1e-9)
        assert r["bytes_ratio"] == pytest.approx(it["2"]["held"] / it["1"]["held"], rel=1e-9)
    if "alexnet32" in s:
        e = s["alexnet32"]["result"]["extrapolated"]
        assert e["total_s"] == pytest.approx(e["record_s"] + e["lasso_s"], rel=1e-9)


@pytest.mark.slow
def test_memory_follows_the_recording_size_formula(quick_run):
    """docs/method.md §1: a bf16 recording of T steps over D live weights holds T x D x 2 bytes of
    rows plus 8 bytes of loss per step; D comes from the model itself, counted here."""
    _, res, _ = quick_run
    s = res["sections"]
    P = _lenet_weights()
    if "memory" in s:
        r = s["memory"]["result"]
        T, it, sp = r["T"], r["iterations"], r["spilled"]
        assert r["width"] == it["1"]["width"] == P, "iteration 1 records every prunable weight"
        assert it["2"]["width"] == pytest.approx(P / 2, abs=P * 0.01)
        for v in it.values():
            assert v["held"] == T * v["width"] * 2 + 8 * T
        assert r["per_step_per_weight"]["1"]["data"] == pytest.approx(2.0)
        # spilled: the file holds the rows, memory two chunks of them plus the losses
        assert sp["width"] == it["2"]["width"] and sp["file_bytes"] == T * sp["width"] * 2
        assert sp["held"] == 2 * sp["chunk_rows"] * sp["width"] * 2 + 8 * T
        assert sp["held"] < it["2"]["held"] and sp["budget"] < T * sp["width"] * 2
    if "overhead" in s:
        r = s["overhead"]["result"]
        assert r["width"] == P and 0 <= r["kept_after_lasso"] <= P
    if "bf16" in s:
        for row in s["bf16"]["result"]["by_l1"].values():
            assert row["total"] == P and 0 <= row["differ"] <= row["total"]
            assert row["differ_pct"] == pytest.approx(100 * row["differ"] / row["total"])
    if "alexnet32" in s:
        from causalprune.data import dataset_spec

        r = s["alexnet32"]["result"]
        width = _prunable_weights("alexnet32", dataset_spec("synthetic", "alexnet32", synthetic_shape=(3, 32, 32)))
        assert r["width"] == width > 23_000_000 and r["spilled"] and not r["file_left"]
        assert r["file_bytes"] == r["steps"] * width * 2
        assert r["extrapolated"]["file_bytes"] == r["T_paper"] * width * 2


def _cuda_claims(text: str) -> list[str]:
    return re.findall(r"torch\.cuda\.is_available\(\) is (True|False)", text)


@pytest.mark.slow
def test_the_gpu_line_says_what_this_machine_has(quick_run):
    import torch

    proc, res, md = quick_run
    has = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if has else None
    assert res["machine"]["cuda_available"] is has and res["machine"]["gpu"] == name
    gpu_part = md[md.rindex(". GPU\n"):]
    assert _cuda_claims(gpu_part) == [str(has)], "the GPU section states what torch found, once"
    assert _cuda_claims(md) == [str(has)]
    assert _cuda_claims(proc.stderr) == [str(has)], "bench/run.py prints what it found"
    line = next(ln for ln in gpu_part.splitlines() if "torch.cuda.is_available()" in ln)
    if has:  # it says what ran on the GPU: the Lasso section builds its tensors there by default
        assert name in line and name in proc.stderr and "no GPU" not in md
        assert res["sections"]["lasso"]["result"]["device"] == "cuda" and "sections run on it: lasso" in line
    else:
        assert "no GPU" in line and "from the CPU" in line
        assert res["sections"]["lasso"]["result"]["device"] == "cpu"
    gpu = res.get("gpu")
    if not (gpu and gpu.get("mode") == "gpu"):  # until gpu_check.sh has run on a GPU
        assert "GPU figures: not measured" in gpu_part
        assert all("not measured" in ln for ln in md.splitlines() if ln.startswith("|") and "on a GPU" in ln)


@pytest.mark.slow
def test_markdown_is_generated_whole(quick_run):
    _, res, md = quick_run
    assert md == render(res), "BENCHMARKS.md is a pure function of results.json"
    assert md.startswith("# Benchmarks") and "## Goals" in md and "GPU" in md
    for sec in res["sections"].values():
        assert sec["title"] in md and sec["command"] in md
    assert res["machine"]["cpu"] in md
