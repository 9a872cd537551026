"""Kill a run, rerun the same command, and check that it ends exactly where a run that was never
interrupted ends: same masks, gammas, checkpoints, metrics.csv and summary (issue 7, items 1-2).

* Real SIGKILLs: `python -m causalprune run` is stopped at a named pause point
  (tests/harness.py, CAUSALPRUNE_TEST_PAUSE_AT) and killed with SIGKILL, so no Python cleanup
  runs: what is on disk is what a pre-empted job or an OOM kill leaves. Points: mid-epoch in
  pretraining, during the recording, in mid-write of state.json, between the recording and the
  Lasso (the recording lives only in memory, so a kill during the Lasso repeats the recording
  too -- same disk state as this point), and mid-epoch in post-training.
* Commit windows, in this process: a stage has written its checkpoint/masks but has not yet
  marked itself done in state.json -- the narrowest windows, where "overwrite the resume
  checkpoint, then mark done" goes wrong. The run is stopped by an exception nothing catches,
  at a moment when no file is open, so the disk is what SIGKILL would leave there.

The uninterrupted reference runs as a process too, beside the kill chain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from causalprune.paths import RunPaths
from causalprune.storage import load_checkpoint, load_tensors

from .conftest import without_keys
from .harness import MARKER, process_env

HARNESS = str(Path(__file__).with_name("harness.py"))

# A quick-like protocol on digits: 2 pretraining epochs, 2 pruning iterations, 3 post-training
# epochs, 6 steps per epoch. Small, but every stage and every resume branch is exercised.
# Pretraining runs in the run folder here (--no-share-pretraining), so that state.json shows every
# kill point; the shared stage runs the same code into its own state.json, and its kill, wait and
# resume are tested in tests/test_shared_work.py.
PROTOCOL = ["--preset", "quick", "--device", "cpu", "--n-pre", "2", "--n-iter", "2", "--n-prune", "1",
            "--n-post", "3", "--patience", "3", "--max-steps-per-epoch", "6", "--no-share-pretraining"]
# The 3rd kill: the resumed process finished iteration 1 and is writing state.json's temporary
# file (the stage's masks and checkpoint are already written), i.e. a kill in mid-write.
STAGE_KILLS = ["pretrain:2", "record:1.1", "write:state.json", "lasso:2", "post:2"]
COMMIT_KILLS = ["commit:pretrain_epochs_done=1", "commit:pretrain_done=True", "commit:iterations_done=1",
                "commit:post_epochs_done=2", "commit:done=True"]
# What may differ between the processes of one run: timings, and the environment they report (the
# in-process chain runs under pytest, whose thread settings are its own).
TIMING_KEYS = {"wall_seconds", "record_seconds", "lasso_seconds", "environment"}
PROCESS_TIMEOUT = 240

def _command(out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, HARNESS, "run", *PROTOCOL, *extra, "--out", str(out), "--name", "run"]

def _run_to_end(out: Path) -> str:
    p = subprocess.run(_command(out), env=process_env(None), capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout

def _kill_at(out: Path, point: str, while_paused=None) -> str:
    """Start the run, wait until it reaches ``point``, SIGKILL it; return what it printed."""
    proc = subprocess.Popen(_command(out), env=process_env(point), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + PROCESS_TIMEOUT
        err_lines = []
        for line in proc.stderr:  # the marker is printed (flushed) on stderr, then the process sleeps
            err_lines.append(line)
            if line.startswith(MARKER):
                break
            assert time.time() < deadline, f"no pause at {point} in time"
        else:
            proc.wait()
            pytest.fail(f"the run never paused at {point} (exit {proc.returncode}):\n{''.join(err_lines)}")
        if while_paused:
            while_paused(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return stdout

def _try_second_writer(paths: RunPaths, log: dict):
    def attempt(pid: int) -> None:
        from causalprune.errors import CausalPruneError
        from causalprune.storage import lock_folder

        try:
            lock_folder(paths.lock)
            log["second_writer"] = "allowed"
        except CausalPruneError as exc:
            log["second_writer"] = str(exc)
        log["holder"] = pid
    return attempt

def _chain(out: Path, points: list[str], log: dict) -> None:
    paths = RunPaths(out / "run")
    try:
        states, temporaries = [], []
        for i, point in enumerate(points):
            hook = _try_second_writer(paths, log) if i == 0 else None
            log.setdefault("stdout", []).append(_kill_at(out, point, hook))
            states.append(json.loads(paths.state.read_text()) if paths.state.exists() else {})
            temporaries.append(sorted(p.name for p in paths.root.rglob(".*.tmp")))
        log["states"], log["temporaries"] = states, temporaries
        log["stdout"].append(_run_to_end(out))
    except BaseException as exc:  # re-raised in the main thread
        log["error"] = exc

def _assert_same_results(ref: RunPaths, got: RunPaths) -> None:
    for rel in ("masks/final.safetensors", "masks/iter_01.safetensors", "masks/iter_02.safetensors",
                "gammas/iter_01.safetensors", "gammas/iter_02.safetensors"):
        a, b = load_tensors(ref.root / rel), load_tensors(got.root / rel)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{rel}: {k} differs after kill and resume"
    for ck in (ref.best, ref.final):
        a, b = load_checkpoint(ck)["model"], load_checkpoint(got.root / ck.relative_to(ref.root))["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), f"{ck.name} differs after kill and resume"
    # Same rows, same values, in the same order: nothing duplicated, nothing lost.
    assert got.metrics.read_text() == ref.metrics.read_text()
    s_ref, s_got = json.loads(ref.summary.read_text()), json.loads(got.summary.read_text())
    for key in ("test_accuracy", "percent_pruned", "best_val_accuracy"):
        assert s_got[key] == s_ref[key], key
    a, b = without_keys(s_got, TIMING_KEYS), without_keys(s_ref, TIMING_KEYS)
    assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}

def _assert_clean(paths: RunPaths) -> None:
    leftovers = sorted(p.name for p in paths.root.rglob(".*.tmp"))
    assert not leftovers, f"temporary files left behind: {leftovers}"
    epoch_files = sorted(p.name for p in paths.checkpoints.glob("*_epoch_*.pt"))
    assert not epoch_files, f"per-epoch resume checkpoints left behind: {epoch_files}"
    assert json.loads(paths.state.read_text())["done"] is True

class _Killed(BaseException):
    """Stands in for SIGKILL inside this process: a BaseException, so no handler catches it."""

def _crash_chain(out: Path, points: list[str], extra: tuple[str, ...] = ()) -> list[dict]:
    """The commit windows, in this process: the run dies at the start of a state commit (no file
    is open then, so the disk is exactly what SIGKILL would leave), and a fresh Experiment resumes."""
    import causalprune.runstate as runstate
    from causalprune.cli import build_parser
    from causalprune.commands.options import resolve_config
    from causalprune.experiment import Experiment

    cfg = resolve_config(build_parser().parse_args(_command(out, extra)[2:]))
    original, states = runstate.RunState.commit, []
    for point in [*points, None]:
        def crash(self, point=point, **updates):
            labels = {f"commit:{k}={v}" for k, v in updates.items() if k.endswith("done")}
            if point in labels:
                raise _Killed(point)
            original(self, **updates)

        runstate.RunState.commit = crash
        try:
            Experiment(cfg, log=lambda m: None).run()
            assert point is None, f"the run never reached {point}"
        except _Killed:
            state = RunPaths(cfg.run_dir()).state
            states.append(json.loads(state.read_text()) if state.exists() else {})
        finally:
            runstate.RunState.commit = original
    return states

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The reference run and the SIGKILL chain as processes, side by side; meanwhile the
    commit-window chain in this process."""
    root = tmp_path_factory.mktemp("kill")
    log: dict = {}
    killer = threading.Thread(target=_chain, args=(root / "stages", STAGE_KILLS, log))
    killer.start()
    ref: dict = {}
    reference = threading.Thread(target=lambda: ref.update(stdout=_run_to_end(root / "reference")))
    reference.start()
    try:
        commit_states = _crash_chain(root / "commits", COMMIT_KILLS)
    finally:
        killer.join()
        reference.join()
    if "error" in log:
        raise log["error"]
    assert "stdout" in ref, "the reference run failed"
    return root, log, commit_states, ref["stdout"]

def test_kill_at_each_stage_then_resume_gives_identical_results(runs):
    root, log, _, _ = runs
    paths = RunPaths(root / "stages" / "run")
    _assert_same_results(RunPaths(root / "reference" / "run"), paths)
    _assert_clean(paths)
    states = log["states"]
    # Each kill hit the stage it aimed at (what state.json says had finished by then).
    assert states[0]["pretrain_epochs_done"] == 1 and not states[0]["pretrain_done"]
    assert states[1]["pretrain_done"] and states[1]["iterations_done"] == 0
    assert states[2]["iterations_done"] == 0 and (paths.masks_dir / "iter_01.safetensors").exists()
    assert [t.startswith(".state.json.") for t in log["temporaries"][2]] == [True], \
        "killed in mid-write: state.json's temporary file is left, the old state.json is intact"
    assert states[3]["iterations_done"] == 1
    assert states[4]["iterations_done"] == 2 and states[4]["post_epochs_done"] == 1
    # A finished epoch is never trained again: epoch 1 of pretraining ran in the first process only.
    printed = "".join(log["stdout"])
    assert printed.count("pretrain epoch 1/2") == 1 and printed.count("pretrain epoch 2/2") == 1
    assert printed.count("post-train epoch 1:") == 1

def test_second_process_on_a_running_folder_is_refused(runs):
    _, log, _, _ = runs
    assert log["second_writer"] != "allowed"
    assert "in use by another running process" in log["second_writer"] and str(log["holder"]) in log["second_writer"]

def test_crash_between_writing_outputs_and_marking_done(runs):
    root, _, states, _ = runs
    paths = RunPaths(root / "commits" / "run")
    _assert_same_results(RunPaths(root / "reference" / "run"), paths)
    _assert_clean(paths)
    # Each crash came after the stage's outputs were written and before state.json moved on.
    assert len(states) == len(COMMIT_KILLS)
    assert states[0].get("pretrain_epochs_done", 0) == 0
    assert states[1]["pretrain_epochs_done"] == 2 and not states[1]["pretrain_done"]
    assert states[2]["pretrain_done"] and states[2]["iterations_done"] == 0
    assert states[3]["post_epochs_done"] == 1
    assert states[4]["post_done"] and not states[4]["done"]

def test_reference_run_prints_each_stage_once(runs):
    ref_stdout = runs[3]
    assert ref_stdout.count("pretrain epoch 1/2") == 1 and "test accuracy" in ref_stdout

def test_crash_right_after_an_early_stop_does_not_train_on(tmp_path):
    """Early stopping after post-training epoch 2 (min_delta is unreachable), then a crash before
    the stage is marked done: the resumed run must not train a 3rd epoch."""
    extra = ("--n-post", "4", "--patience", "1", "--min-delta", "100", "--n-iter", "1")
    _crash_chain(tmp_path / "reference", [], extra)
    states = _crash_chain(tmp_path / "crashed", ["commit:post_done=True"], extra)
    ref, got = RunPaths(tmp_path / "reference" / "run"), RunPaths(tmp_path / "crashed" / "run")
    assert len(states) == 1, "the crash happened"
    assert json.loads(got.state.read_text())["post_epochs_done"] == 2
    assert got.metrics.read_text() == ref.metrics.read_text()

# -- every file is written atomically ------------------------------------------------------------------------
# Not results, so not written through storage.py on purpose: the spill file is a scratch matrix that a
# resumed run truncates and rewrites; TensorBoard event files are append-only logs.
WRITE_ALLOWED = {"storage.py", "spill.py", "tblog.py"}

def _safe_targets(func) -> set[str]:
    """Names bound in ``func`` to an atomic_path temporary or to an in-memory buffer."""
    import ast

    names = set()
    for node in ast.walk(func):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                callee = getattr(call, "func", None)
                if isinstance(callee, (ast.Name, ast.Attribute)) and \
                        getattr(callee, "id", getattr(callee, "attr", "")) == "atomic_path" and \
                        isinstance(item.optional_vars, ast.Name):
                    names.add(item.optional_vars.id)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            callee = node.value.func
            if getattr(callee, "id", getattr(callee, "attr", "")) in ("BytesIO", "StringIO"):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names

def _unsafe_writes(path: Path) -> list[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for func in funcs:
        safe = _safe_targets(func)
        for node in ast.walk(func):
            if not isinstance(node, ast.Call):
                continue
            f, args = node.func, node.args
            first = args[0] if args else None
            first_safe = isinstance(first, ast.Name) and first.id in safe
            where = f"{path.name}:{node.lineno}"
            if isinstance(f, ast.Name) and f.id == "open":
                mode = args[1] if len(args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
                if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+") and not first_safe:
                    found.append(f"{where}: open(..., {mode.value!r})")
            elif isinstance(f, ast.Attribute):
                owner = getattr(f.value, "id", "")
                if (owner, f.attr) == ("torch", "save") and not (len(args) > 1 and isinstance(args[1], ast.Name)
                                                                and args[1].id in safe):
                    found.append(f"{where}: torch.save")
                elif f.attr in ("savefig", "savez", "savez_compressed") and not first_safe:
                    found.append(f"{where}: {f.attr}")
                elif owner in ("np", "numpy") and f.attr == "save" and not first_safe:
                    found.append(f"{where}: np.save")
                elif f.attr in ("write_text", "write_bytes") and owner not in safe | {"storage"}:
                    found.append(f"{where}: .{f.attr}")
    return found

def test_every_file_is_written_through_storage():
    import causalprune

    root = Path(causalprune.__file__).parent
    found = [w for p in sorted(root.rglob("*.py")) if p.name not in WRITE_ALLOWED for w in _unsafe_writes(p)]
    assert not found, "writes that bypass storage.atomic_path (a kill would leave a torn file):\n" + "\n".join(found)

def test_the_write_scan_catches_a_direct_write(tmp_path):
    """The control for the scan above."""
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\ndef f(p, fig, obj):\n    torch.save(obj, p)\n    fig.savefig(p / 'a.png')\n"
                   "    p.write_text('x')\n    open(p, 'w').write('x')\n")
    good = tmp_path / "good.py"
    good.write_text("import io, torch\nfrom causalprune.storage import atomic_path\n"
                    "def f(p, fig, obj):\n    with atomic_path(p) as tmp:\n        torch.save(obj, tmp)\n"
                    "        fig.savefig(tmp)\n    buf = io.BytesIO()\n    fig.savefig(buf)\n")
    assert len(_unsafe_writes(bad)) == 4 and _unsafe_writes(good) == []
