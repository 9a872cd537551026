"""Smoke test of the benchmark suite: `bench/run.py --quick` runs every section and writes both files.

The figures of a quick run mean little; what is checked is that every section runs, reports its
keys and goals, and that BENCHMARKS.md is generated whole (machine, goals table, one part per
section, the GPU part). Sections whose module is not in the tree yet are left out by name.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from run import SECTIONS, render  # noqa: E402

KEYS = {
    "lasso": {"speed", "scaling", "bandwidth_GBps"},
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


@pytest.mark.slow
def test_figures_are_consistent(quick_run):
    _, res, _ = quick_run
    s = res["sections"]
    if "overhead" in s:
        r = s["overhead"]["result"]
        want = (r["T"] * r["step_recorded_s"] + r["lasso_s"]) / (r["T"] * r["step_plain_s"])
        assert r["overhead_ratio"] == pytest.approx(want) and r["overhead_ratio"] > 0
    if "memory" in s:
        r = s["memory"]["result"]
        assert r["per_step_per_weight"]["1"]["data"] == pytest.approx(2.0)  # bf16 rows
        assert r["width_ratio"] == pytest.approx(0.5, abs=0.01)
        assert r["spilled"]["held"] < r["iterations"]["2"]["held"]
    if "alexnet32" in s:
        r = s["alexnet32"]["result"]
        assert r["width"] > 23_000_000 and r["spilled"] and not r["file_left"]
    if "bf16" in s:
        for row in s["bf16"]["result"]["by_l1"].values():
            assert 0 <= row["differ"] <= row["total"]


@pytest.mark.slow
def test_markdown_is_generated_whole(quick_run):
    _, res, md = quick_run
    assert md == render(res), "BENCHMARKS.md is a pure function of results.json"
    assert md.startswith("# Benchmarks") and "## Goals" in md and "GPU" in md and "No GPU was available" in md
    for sec in res["sections"].values():
        assert sec["title"] in md and sec["command"] in md
    assert res["machine"]["cpu"] in md
