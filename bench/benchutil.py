"""Helpers shared by the benchmark modules: machine facts, timing, memory sampling, data, goals.

Every bench module exposes ``run(quick) -> dict`` and ``markdown(res) -> str``; the ones with a
target also expose ``goals(res) -> list[dict]`` built with :func:`goal`, which bench/run.py
collects into the summary table of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import torch

__all__ = ["ROOT", "machine", "last_level_cache", "median", "timed", "goal", "lenet_data", "cycle_batches", "sgd_step",
           "MemorySampler", "proc_status", "warm_lasso", "one_thread"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    """What the figures were measured on (they mean little without it)."""
    mem = proc_status("/proc/meminfo").get("MemTotal", 0)
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "ram_bytes": mem, "cuda_available": cuda, "gpu": gpu, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": _git_commit()}


def _size(text: str) -> int:
    """'307200K' / '32 MiB' / '4096' -> bytes."""
    t = text.strip().upper().replace("IB", "").replace("B", "").replace(" ", "")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def last_level_cache() -> tuple[int, str]:
    """(bytes, where it was read) of CPU 0's last-level data cache, from sysfs (the highest
    level that holds data); (0, "unknown") where the machine does not say."""
    best, where = (0, 0), "unknown"
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind, level = (d / "type").read_text().strip(), int((d / "level").read_text())
            size = _size((d / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and (level, size) > best:
            best, where = (level, size), f"L{level}, {d / 'size'}"
    return best[1], where


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def timed(fn: Callable, *args, **kw) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def goal(figure: str, value: float, target: float | None, *, op: str = "<=", unit: str = "",
         fmt: str = "{:.3g}", note: str = "") -> dict:
    """One row of the goals table: ``value op target`` decides 'met' (target None: for information)."""
    if target is None:
        return {"figure": figure, "value": value, "target": None, "op": op, "unit": unit, "met": None,
                "shown": fmt.format(value) + unit, "goal": "(information)", "note": note}
    ok = {"<=": value <= target, ">=": value >= target, "<": value < target, ">": value > target}[op]
    return {"figure": figure, "value": value, "target": target, "op": op, "unit": unit, "met": bool(ok),
            "shown": fmt.format(value) + unit, "goal": f"{op} {fmt.format(target)}{unit}", "note": note}


def lenet_data(quick: bool, batch_size: int):
    """LeNet's data: Fashion-MNIST (``make fmnist`` installs it). A quick run uses synthetic
    1x28x28 blobs instead (same shapes, so the same per-step costs, and nothing to load)."""
    from causalprune.data import load_data

    kw = dict(model="lenet", batch_size=batch_size, seed=0, pipeline="device")
    if quick:
        return load_data("synthetic", synthetic_shape=(1, 28, 28), synthetic_samples=2048, **kw)
    return load_data("fashion-mnist", **kw)


def cycle_batches(batches, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches forever, a fresh seeded epoch after each one."""
    while True:
        for x, y in batches.epoch(seed):
            yield x, y
        seed += 1


def sgd_step(model, opt, x, y, callbacks=()) -> torch.Tensor:
    """One step as train.train_epoch takes it: forward, loss, backward, step, then the callbacks."""
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for cb in callbacks:
        cb.after_step(loss)
    return loss


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block: for micro-timings of memory-bound steps, which on a
    loaded machine would otherwise mostly measure how long OpenMP waits for its second thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def warm_lasso() -> None:
    """Load (or compile) the CPU solver's kernels once, outside any timing."""
    from causalprune.solvers import FeatureBlock, LassoSchedule, solve_reference

    for dtype in (torch.bfloat16, torch.float32):
        data = torch.rand(4, 300).to(dtype)
        for backend in ("auto", "coupled"):  # the coordinate-parallel kernels, and the coupled one
            solve_reference([FeatureBlock(data, kind="square", scale=1e-6)], torch.randn(3), 1e-14,
                            schedule=LassoSchedule(epochs=1), generator=torch.Generator().manual_seed(0),
                            backend=backend)


def proc_status(path: str = "/proc/self/status") -> dict[str, int]:
    """Memory lines of /proc/self/status (or /proc/meminfo) in bytes."""
    out = {}
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


class MemorySampler:
    """Peak resident memory of this process while the block runs: anonymous memory (what the
    process really holds) and file-backed pages (a memory-mapped spill file: page cache that
    the kernel can drop), sampled every ``interval`` s, plus the kernel's own peak (VmHWM,
    reset at entry where /proc/self/clear_refs allows it)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_anon = self.peak_file = self.peak_rss = 0
        self.start: dict[str, int] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        s = proc_status()
        self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, s.get("RssFile", 0))
        self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "MemorySampler":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.start = proc_status()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.hwm = proc_status().get("VmHWM", 0)

    def grown_anon(self) -> int:
        """Peak anonymous memory above what the process held at entry."""
        return self.peak_anon - self.start.get("RssAnon", 0)


def section_main(run: Callable[..., dict], markdown: Callable[[dict], str], doc: str | None,
                 quick_help: str) -> None:
    """The command line every bench module shares: ``[--quick] [--json]``, then its markdown."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", action="store_true", help="also print the raw result as JSON")
    args = ap.parse_args()
    result = run(quick=args.quick)
    print(markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
