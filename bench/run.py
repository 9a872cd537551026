"""Run the benchmark suite and write bench/results.json and BENCHMARKS.md (issue 5).

    python bench/run.py                 # every section (`make bench`); rewrites both files
    python bench/run.py --quick         # smoke run; writes under bench/_tmp/quick/ unless told otherwise
    python bench/run.py --only memory   # one section (repeatable); merged into the existing results

Every section is a module bench/bench_<name>.py with ``run(quick) -> dict`` and
``markdown(res) -> str``, and ``goals(res) -> list[dict]`` where it has targets. All run in
this one process, one after the other; a section that fails is reported (with its error) and
the others still run; the exit status is then 1. BENCHMARKS.md is generated whole from the
results, with the machine, the date, and the command that reproduces every figure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchutil import ROOT, machine  # noqa: E402

from causalprune.storage import read_json, write_json, write_text  # noqa: E402

__all__ = ["SECTIONS", "main", "render", "gpu_line", "cuda_available"]

from gpu_report import GPU_JSON, gpu_goal_rows, gpu_section  # noqa: E402

# name -> (module, title); the order of BENCHMARKS.md.
SECTIONS: dict[str, tuple[str, str]] = {
    "lasso": ("bench_lasso", "Lasso throughput (coordinate-parallel vs coupled kernel; vs the naive per-sample loop)"),
    "overhead": ("bench_overhead", "Pruning-phase overhead (SGD + recording + Lasso vs plain SGD)"),
    "memory": ("bench_memory", "Recorder memory, and iteration 2 at ~50% sparsity"),
    "bf16": ("bench_bf16", "bf16 vs fp32 storage of the recording"),
    "alexnet32": ("bench_alexnet32", "Memory-bounded mode: AlexNet32 (23.2M weights) pruning phase"),
    "pipeline": ("bench_pipeline", "Input pipeline (epoch time per pipeline)"),
    "sweep": ("bench_sweep", "A 7-value one-iteration sweep: every run alone vs pretrain once, record once"),
}
def cuda_available(m: dict) -> bool:
    """Whether torch saw a CUDA device on the machine of ``m`` (results written before the
    ``cuda_available`` field existed: whether they name a GPU)."""
    return bool(m.get("cuda_available", m.get("gpu") is not None))


def gpu_line(m: dict, on_gpu: list[str] | None = None) -> str:
    """What the run found and did: ``torch.cuda.is_available()``, the name of device 0, and
    which sections ran on it (``on_gpu``; None while nothing has run yet)."""
    if not cuda_available(m):
        return ("CUDA: torch.cuda.is_available() is False; no GPU was available in this session, so every "
                "figure of this suite is from the CPU.")
    head = f"CUDA: torch.cuda.is_available() is True; device 0 is {m['gpu']}"
    if on_gpu is None:
        return head + "."
    ran = f"sections run on it: {', '.join(on_gpu)}" if on_gpu else "no section of this suite ran on it"
    return f"{head}; {ran} (the GPU checks and goals are `bash bench/gpu_check.sh`'s)."


def _on_gpu(sections: dict) -> list[str]:
    """Sections whose results say they ran on a CUDA device."""
    devices = {n: (s.get("result") or {}).get("device") for n, s in sections.items()}
    return [f"{n} (its speed rows)" for n, d in devices.items() if isinstance(d, str) and d.startswith("cuda")]


def _command(name: str, quick: bool) -> str:
    return f"python bench/run.py --only {name}" + (" --quick" if quick else "")


def _lasso_goals(res: dict) -> list[dict]:
    """The goals of bench_lasso.py's speed rows at d = 625,500 (or, in a quick run, the largest d
    it timed) against the naive loop, and the linearity of its scaling fits (its own goals()
    adds the coordinate-parallel rows)."""
    from benchutil import goal

    rows = res.get("speed", [])
    if not rows:
        return []
    d = 625_500 if any(r["d"] == 625_500 for r in rows) else max(r["d"] for r in rows)
    out = []
    for r in (r for r in rows if r["d"] == d):
        where = f"d = {d:,}, x in {r['dtype']}"
        out.append(goal(f"Lasso speed-up over the naive per-sample loop ({where})", r["ratio"], 50.0, op=">=",
                        unit="x", fmt="{:,.0f}"))
        out.append(goal(f"Lasso time / memory-bandwidth floor ({where})", r["over_floor"], 3.0, unit="x",
                        fmt="{:.1f}"))
    for key, label in (("vs_d", "d"), ("vs_T", "T")):
        fit = res.get("scaling", {}).get(key)
        if fit:
            out.append(goal(f"Lasso time linear in {label}: R² of the linear fit", fit["r2"], 0.99, op=">=",
                            fmt="{:.4f}"))
    return out


def run_section(name: str, quick: bool) -> dict:
    """Import and run one section; never raises (a failure is recorded in the entry)."""
    module, title = SECTIONS[name]
    m = machine()
    entry = {"title": title, "module": f"bench/{module}.py", "command": _command(name, quick), "quick": quick,
             "date": m["date"], "load_average_before": m["load_average"],
             "machine": {"cpu": m["cpu"], "cores": m["cores"], "gpu": m["gpu"]}}
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(module)
        res = mod.run(quick=quick)
        entry["result"] = res
        entry["markdown"] = mod.markdown(res)
        own = mod.goals(res) if hasattr(mod, "goals") else []
        entry["goals"] = (_lasso_goals(res) if name == "lasso" else []) + own
        entry["error"] = None
    except Exception as exc:  # one broken section must not hide the others' figures
        entry.update(result=None, markdown="", goals=[], error=f"{type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc())
    entry["seconds"] = time.perf_counter() - t0
    return entry


def _body(md: str) -> str:
    """A section's markdown without its own leading heading (the suite numbers its sections)."""
    first, _, rest = md.partition("\n")
    return rest.lstrip("\n") if first.startswith("#") else md


def _status(g: dict) -> str:
    return "information" if g["met"] is None else ("met" if g["met"] else "**NOT met**")


def _other_machines(results: dict) -> list[str]:
    """One line naming the sections kept from an earlier run on another machine (``--only``)."""
    m = results["machine"]
    other = {}
    for i, name in enumerate((n for n in SECTIONS if n in results["sections"]), 1):
        sm = results["sections"][name].get("machine")
        if sm and (sm.get("cpu"), sm.get("cores")) != (m["cpu"], m["cores"]):
            other.setdefault(f"{sm['cpu']}, {sm['cores']} cores", []).append(str(i))
    return [f"Sections {', '.join(v)} were kept from an earlier run on another machine ({k}); their dates say when."
            for k, v in other.items()]


def render(results: dict) -> str:
    """BENCHMARKS.md from a results dict (pure: everything comes from ``results``)."""
    m = results["machine"]
    la = ", ".join(f"{x:.1f}" for x in m["load_average"])
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` (`python bench/run.py{' --quick' if results['quick'] else ''}`) on "
             f"{m['date']} at commit {m['commit']}; do not edit by hand -- rerun it. Raw figures: "
             "`bench/results.json`." + (" **Quick smoke run: not the protocol.**" if results["quick"] else ""), "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
             f"{m['ram_bytes'] / 1024**3:.1f} GB RAM, GPU: {m['gpu'] or 'none'}; torch {m['torch']} with "
             f"{m['torch_threads']} threads, Python {m['python']}. Load average at the start: {la} -- on a shared "
             "machine absolute times are noisy, which is why every ratio is measured side by side in one process.",
             *_other_machines(results),
             f"Total time: {results['total_seconds'] / 60:.1f} min.", "", "## Goals", "",
             "| figure | measured | goal | status | reproduce |", "|---|---:|---:|---|---|"]
    ordered = [(n, results["sections"][n]) for n in SECTIONS if n in results["sections"]]  # JSON sorts keys
    for name, sec in ordered:
        for g in sec["goals"]:
            note = f" ({g['note']})" if g.get("note") else ""
            lines.append(f"| {g['figure']}{note} | {g['shown']} | {g['goal']} | {_status(g)} | `{sec['command']}` |")
        if sec["error"]:
            lines.append(f"| {sec['title']} | failed | | **error** | `{sec['command']}` |")
    lines += gpu_goal_rows(results.get("gpu"))
    for i, (name, sec) in enumerate(ordered, 1):
        lines += ["", f"## {i}. {sec['title']}", "",
                  f"`{sec['command']}` (module `{sec['module']}`; {sec['date']}, {sec['seconds']:.0f} s)", ""]
        lines.append(f"**Failed:** `{sec['error']}`" if sec["error"] else _body(sec["markdown"]))
    lines += ["", f"## {len(ordered) + 1}. GPU", "", gpu_line(m, _on_gpu(results["sections"])), "",
              gpu_section(results.get("gpu")), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, well under a minute per section")
    ap.add_argument("--only", action="append", choices=list(SECTIONS), metavar="NAME",
                    help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    ap.add_argument("--json", type=Path, help="results file (default bench/results.json; quick: bench/_tmp/quick/)")
    ap.add_argument("--md", type=Path, help="Markdown file (default BENCHMARKS.md; quick: bench/_tmp/quick/)")
    args = ap.parse_args(argv)
    out_dir = HERE / "_tmp" / "quick" if args.quick else None
    json_path = args.json or (out_dir / "results.json" if out_dir else HERE / "results.json")
    md_path = args.md or (out_dir / "BENCHMARKS.md" if out_dir else ROOT / "BENCHMARKS.md")
    names = args.only or list(SECTIONS)
    t0 = time.perf_counter()
    start_machine = machine()
    print(f"[bench] {gpu_line(start_machine)}", file=sys.stderr, flush=True)
    sections = {}
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        sections[name] = run_section(name, args.quick)
        sec = sections[name]
        print(f"[bench] {name}: {'FAILED ' + sec['error'] if sec['error'] else 'done'} in {sec['seconds']:.0f} s",
              file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    if args.only and json_path.exists():  # one section rerun: keep the others' figures (each has its date)
        old = read_json(json_path)
        for sec in old.get("sections", {}).values():  # kept sections remember the machine they ran on
            sec.setdefault("machine", {k: old["machine"].get(k) for k in ("cpu", "cores", "gpu")})
        merged = {n: (sections[n] if n in sections else old["sections"][n]) for n in SECTIONS
                  if n in sections or n in old.get("sections", {})}
        sections, total = merged, sum(s["seconds"] for s in merged.values())
    # the GPU section comes from bench/gpu_check.sh's last run on a GPU machine, if any
    gpu = read_json(GPU_JSON) if GPU_JSON.exists() else None
    results = {"machine": start_machine, "quick": args.quick, "total_seconds": total, "sections": sections,
               "gpu": gpu}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(json_path, results)
    write_text(md_path, render(results))
    print(f"[bench] wrote {json_path} and {md_path} ({total / 60:.1f} min)", file=sys.stderr)
    failed = [n for n, s in sections.items() if s["error"]]
    if failed:
        print(f"[bench] failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
