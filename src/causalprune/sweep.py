"""The phase-shift sweep (paper §1 Test 1, Fig. 1a; Fig. 2): many runs under one protocol.

Causal pruning's sparsity is an *outcome* of L1_coeff, so causal runs sweep a log-spaced grid of
L1_coeff; magnitude pruning takes a target sparsity, by default the sparsities causal reached
(median over seeds per L1_coeff), so both curves cover the same range. For each causal run of the
main protocol two layer-matched baselines prune within each layer to exactly that run's per-layer
sparsity, by magnitude and at random: they separate "how much per layer" from "which weights".

The main protocol is the first value of each of ``n_iter_grid`` and ``n_prune_grid``; further
values add causal runs for the hyperparameter strip plots only. Every run is an ordinary run
folder under ``--out`` (reused when finished); the sweep's own files go to ``<out>/sweep-<hash>/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import ConfigError, EmptyLayerError, TrainingError
from .paths import RunPaths, SweepPaths
from .results.runs import read_run
from .storage import read_json, write_json

__all__ = ["SweepSpec", "BASELINES", "parse_grid", "parse_ints", "sweep_dir", "causal_configs",
           "magnitude_targets", "baseline_configs", "run_sweep", "planned_count"]

# Baseline curves a sweep can add to the causal one.
BASELINES = ("magnitude", "magnitude (layer-matched)", "random (layer-matched)")
# Failures that are an outcome of a setting (an L1_coeff so large it empties a layer, a diverging
# run), not a mistake of the user: the sweep records them and goes on.
_RUN_FAILURES = (EmptyLayerError, TrainingError)


@dataclass(frozen=True)
class SweepSpec:
    l1_grid: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    sparsity_grid: tuple[float, ...] | None = None  # fractions in [0, 1); None: follow causal
    n_iter_grid: tuple[int, ...] = ()                # empty: the base config's value
    n_prune_grid: tuple[int, ...] = ()
    baselines: tuple[str, ...] = BASELINES

    def validate(self) -> "SweepSpec":
        if not self.l1_grid or not self.seeds:
            raise ConfigError("a sweep needs at least one --l1-grid value and one --seeds value")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ConfigError(f"unknown baseline {bad[0]!r}; choose from {', '.join(BASELINES)}")
        if self.sparsity_grid is not None and not all(0 <= s < 1 for s in self.sparsity_grid):
            raise ConfigError("--sparsity-grid values are fractions in [0, 1), e.g. 0.2,0.5,0.8")
        if not all(v > 0 and math.isfinite(v) for v in self.l1_grid):
            raise ConfigError("--l1-grid values must be positive finite numbers, e.g. 1e-16:1e-11:6")
        return self


def parse_grid(text: str, *, log: bool) -> tuple[float, ...]:
    """``a,b,c`` (explicit) or ``start:stop:num`` (``num`` values, log-spaced if ``log``)."""
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            n, a, b = int(num), float(start), float(stop)
            if n < 1 or (log and (a <= 0 or b <= 0)):
                raise ValueError(text)
            values = np.geomspace(a, b, n) if log else np.linspace(a, b, n)
            # Round to 12 significant digits so the run names (hashes) are stable across platforms.
            return tuple(float(f"{v:.12g}") for v in values)
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        form = "1e-16:1e-11:6" if log else "0.2,0.5,0.8 or 0.2:0.9:8"
        raise ConfigError(f"cannot read the grid {text!r}; write it as {form}") from exc


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{what} takes whole numbers separated by commas, e.g. 0,1,2 (got {text!r})") from exc


def _main(base: Config, spec: SweepSpec) -> Config:
    return base.replace(n_iter=(spec.n_iter_grid or (base.n_iter,))[0],
                        n_prune=(spec.n_prune_grid or (base.n_prune,))[0])


def sweep_dir(base: Config, spec: SweepSpec) -> Path:
    """``<out>/sweep-<hash>``: the hash covers the protocol and the grids, not the runtime."""
    varied = ("method", "seed", "l1_coeff", "target_sparsity", "match_layers", "n_iter", "n_prune")
    key = {"base": {k: v for k, v in base.hp_dict().items() if k not in varied},
           "main": [_main(base, spec).n_iter, _main(base, spec).n_prune], "spec": asdict(spec)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return SweepPaths.folder(base.out, base.model, base.dataset, digest)


def causal_configs(base: Config, spec: SweepSpec) -> list[Config]:
    """Main protocol first (seed-major), then the other N_iter/N_prune values."""
    main = _main(base, spec)
    protocols = [(main.n_iter, main.n_prune)]
    protocols += [(i, p) for i in (spec.n_iter_grid or (main.n_iter,)) for p in (spec.n_prune_grid or (main.n_prune,))
                  if (i, p) != protocols[0]]
    return [base.replace(method="causal", seed=s, l1_coeff=l1, n_iter=i, n_prune=p)
            for i, p in protocols for s in spec.seeds for l1 in spec.l1_grid]


def magnitude_targets(spec: SweepSpec, causal_rows: list[dict]) -> list[float]:
    """The global-magnitude target sparsities: the given grid, or the median over seeds of the
    sparsity the main-protocol causal runs reached at each L1_coeff (rounded to 0.01 %, so reruns hit the same runs)."""
    if spec.sparsity_grid is not None:
        return sorted(set(spec.sparsity_grid))
    by_l1: dict[float, list[float]] = {}
    for r in causal_rows:
        if r.get("status") == "ok" and r.get("main", True):
            by_l1.setdefault(r["l1_coeff"], []).append(r["percent_pruned"])
    targets = {min(round(float(np.median(v)) / 100.0, 4), 0.9999) for v in by_l1.values()}
    return sorted(targets)


def baseline_configs(base: Config, spec: SweepSpec, causal_rows: list[dict], kind: str) -> list[Config]:
    """Configs of one baseline curve, on the main protocol."""
    main = _main(base, spec)
    if kind == "magnitude":
        return [main.replace(method="magnitude", seed=s, target_sparsity=t)
                for s in spec.seeds for t in magnitude_targets(spec, causal_rows)]
    method = kind.split()[0]
    return [main.replace(method=method, seed=r["seed"], match_layers=str(Path(r["run_dir"]).resolve()))
            for r in causal_rows if r.get("status") == "ok" and r.get("main")]


def planned_count(spec: SweepSpec, n_causal: int) -> int:
    """How many runs the sweep will have (for the progress bar), before any has run."""
    n_main = len(spec.l1_grid) * len(spec.seeds)
    n_mag = len(spec.seeds) * (len(set(spec.sparsity_grid)) if spec.sparsity_grid is not None else len(spec.l1_grid))
    return n_causal + ("magnitude" in spec.baselines) * n_mag + \
        sum(b in spec.baselines for b in BASELINES[1:]) * n_main


def _one(cfg: Config, curve: str, failures: dict, *, overwrite: bool, retry: bool, log) -> dict:
    from .experiment import Experiment

    name = cfg.run_name()
    row = {"curve": curve, "method": cfg.method, "seed": cfg.seed, "l1_coeff": cfg.l1_coeff if cfg.method == "causal" else None,
           "target_sparsity": cfg.target_sparsity if cfg.target_sparsity >= 0 else None, "n_iter": cfg.n_iter,
           "n_prune": cfg.n_prune, "match_layers": cfg.match_layers, "run_dir": str(cfg.run_dir())}
    if name in failures and not (retry or overwrite):
        return {**row, "status": f"failed: {failures[name]}", "reused": True}
    reused = RunPaths(cfg.run_dir()).summary.is_file() and not overwrite
    try:
        Experiment(cfg, overwrite=overwrite, log=log).run()
    except _RUN_FAILURES as exc:
        failures[name] = str(exc)
        return {**row, "status": f"failed: {exc}", "reused": False}
    failures.pop(name, None)
    summary = read_run(cfg.run_dir())
    return {**row, "status": "ok", "reused": reused, "percent_pruned": summary["percent_pruned"],
            "test_accuracy": summary["test_accuracy"]}


def run_sweep(base: Config, spec: SweepSpec, *, overwrite: bool = False, retry_failed: bool = False,
              log: Callable[[str], None] | None = None) -> tuple[list[dict], Path]:
    """Run (or reuse) every run of the sweep, then write its files; returns (rows, sweep folder)."""
    from tqdm.auto import tqdm

    from .experiment import check_config
    from .results.sweep_files import write_sweep_outputs

    spec = spec.validate()
    base = check_config(base.replace(name=""))  # a fixed --name would put every run in one folder
    out = sweep_dir(base, spec)
    fail_path = SweepPaths(out).failures
    failures: dict[str, str] = read_json(fail_path) if fail_path.is_file() else {}
    quiet = log or (lambda msg: None)
    causal = causal_configs(base, spec)
    rows: list[dict] = []
    with tqdm(total=planned_count(spec, len(causal)), desc="sweep", unit="run", disable=None) as bar:
        def go(cfg: Config, curve: str, main: bool) -> None:
            row = _one(cfg, curve, failures, overwrite=overwrite, retry=retry_failed, log=quiet)
            rows.append({**row, "main": main})
            write_json(fail_path, failures)
            bar.update(1)
            bar.write(_describe(row))

        n_main = len(spec.l1_grid) * len(spec.seeds)
        for i, cfg in enumerate(causal):
            go(cfg, "causal", i < n_main)
        # The baselines' runs are known only now: magnitude follows causal's sparsities, and a
        # failed causal run has no layer-matched twins.
        plan = [(kind, baseline_configs(base, spec, list(rows), kind)) for kind in BASELINES if kind in spec.baselines]
        bar.total = len(rows) + sum(len(cfgs) for _, cfgs in plan)
        bar.refresh()
        for kind, cfgs in plan:
            for cfg in cfgs:
                go(cfg, kind, True)
    write_sweep_outputs(rows, out, base, spec)
    return rows, out


def _describe(row: dict) -> str:
    where = f"l1={row['l1_coeff']:.1e}" if row["l1_coeff"] is not None else \
        f"S={100 * row['target_sparsity']:.2f}%" if row["target_sparsity"] is not None else \
        f"match {Path(row['match_layers']).name}"
    head = f"{row['curve']:<26} seed {row['seed']} {where}"
    if row["status"] != "ok":
        return f"{head}: {row['status']}"
    return (f"{head}: {row['percent_pruned']:.2f}% pruned, test accuracy {row['test_accuracy']:.2f}%"
            + (" (reused)" if row["reused"] else ""))
