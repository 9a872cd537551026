"""bench/gpu_check.sh's CPU mode: the prepared GPU check runs end to end on tiny shapes wherever
the suite runs, writes its results and a BENCHMARKS.md whose GPU figures read "not measured",
and says in one line that the GPU figures were not measured (so the script cannot rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_cpu_mode(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--mode", "cpu", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [ln for ln in proc.stdout.splitlines() if ln.startswith("GPU figures were not measured")]
    assert len(said) == 1, proc.stdout
    res = json.loads((tmp_path / "results-gpu.json").read_text())
    assert res["mode"] == "cpu" and "skipped" in res["tests"]
    assert [r["d"] for r in res["lasso"]] == [20_000]
    assert all(r["identical"] and r["coupled_us"] > 0 and r["coord_us"] > 0 for r in res["lasso"])
    assert res["lenet_lasso"]["d"] == 430_500 and res["lenet_lasso"]["seconds"] > 0
    assert [r["model"] for r in res["overhead"]] == ["lenet", "alexnet32", "resnet18"]
    for r in res["overhead"]:
        assert r["overhead"] == (r["T"] * r["step_recorded_s"] + r["lasso_s"]) / (r["T"] * r["step_plain_s"])
        assert r["width"] > 0 and r["lasso_s"] > 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "GPU figures: not measured" in md
    gpu_rows = [ln for ln in md.splitlines() if ln.startswith("|") and "on a GPU" in ln]
    assert len(gpu_rows) == 5 and all("not measured" in ln for ln in gpu_rows)
    # the committed files are not touched in CPU mode
    assert not (tmp_path / "results.json").exists()
    # the GPU-mode rendering, fed this run's figures as if a GPU had produced them (what a GPU
    # machine would write; checked here so that a formatting slip cannot wait for one)
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_report import gpu_goal_rows, gpu_section

    as_gpu = {**res, "mode": "gpu", "device": "a GPU"}
    section = gpu_section(as_gpu)
    assert "a GPU" in section and "| 20,000 |" in section and "| resnet18 |" in section
    rows = gpu_goal_rows(as_gpu)
    assert len(rows) == 5 and sum("not measured" in r for r in rows) == 1  # no 16.8M row in CPU mode


def test_a_failed_phase_is_recorded_and_the_next_still_runs(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_check import _phase

    res, path = {}, tmp_path / "results-gpu.json"

    def boom():
        raise MemoryError("CUDA out of memory")

    _phase(res, "overhead_resnet18", boom, path, 0.0)
    _phase(res, "overhead_lenet", lambda: {"model": "lenet"}, path, 0.0)
    assert res["errors"] == {"overhead_resnet18": "MemoryError: CUDA out of memory"}
    assert res["overhead_lenet"] == {"model": "lenet"}
    written = json.loads(path.read_text())  # what a check killed at this point would leave
    assert written["errors"] == res["errors"] and written["overhead_lenet"] == {"model": "lenet"}


def test_publish_refuses_what_is_not_a_finished_gpu_run(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_check import publish

    before = (ROOT / "BENCHMARKS.md").read_text()
    assert publish(tmp_path / "missing.json") == 2
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps({"mode": "cpu", "goals": {}}))
    assert publish(cpu) == 2
    partial = tmp_path / "partial.json"  # a GPU run stopped before its end has no "goals"
    partial.write_text(json.dumps({"mode": "gpu", "lasso": []}))
    assert publish(partial) == 2
    assert "not a finished GPU-mode result" in capsys.readouterr().err
    assert (ROOT / "BENCHMARKS.md").read_text() == before
