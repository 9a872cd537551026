"""The phase-shift sweep (paper §1 Test 1, Fig. 1a; Fig. 2): many runs under one protocol.

Causal pruning's sparsity is an *outcome* of L1_coeff, so causal runs sweep a log-spaced grid of
L1_coeff; magnitude pruning takes a target sparsity, by default exactly the sparsity the causal run
of the same seed and L1_coeff reached, so every magnitude run is paired with a causal run. For each
causal run of the main protocol two layer-matched baselines prune within each layer to exactly that
run's per-layer sparsity, by magnitude and at random, and ``causal-budget`` follows causal's
per-layer count iteration by iteration: they separate "how much per layer" from "which weights".
``none`` adds the unpruned reference of each seed.

Every run starts from its seed's shared pretraining (pretrain.py), and iteration 1's SGD epochs and
recording are made once per seed and reused by every run of the sweep (shared.py): per extra
L1_coeff, only its Lasso is new in iteration 1.

The main protocol is the first value of each of ``n_iter_grid`` and ``n_prune_grid``; further
values add causal runs for the hyperparameter strip plots only. Every run is an ordinary run
folder under ``--out`` (reused when finished); the sweep's own files go to ``<out>/sweep-<hash>/``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config, settings_digest
from .errors import ConfigError, EmptyLayerError, TrainingError
from .paths import RunPaths, SweepPaths
from .results.runs import read_run
from .shared import SharedEpochs
from .storage import read_json, write_json

__all__ = ["SweepSpec", "BASELINES", "parse_grid", "parse_ints", "sweep_dir", "causal_configs",
           "magnitude_targets", "exact_target", "follower_configs", "budget_magnitude_config", "BUDGET_MAGNITUDE",
           "seed_configs", "run_sweep", "planned_count", "DEFAULT_BASELINES"]

# Baseline curves a sweep can add to the causal one (the first three by default).
BASELINES = ("magnitude", "magnitude (layer-matched)", "random (layer-matched)", "causal-budget",
             "magnitude (budget sparsity)", "none")
#: global magnitude at each causal-budget run's own sparsity: causal-budget drifts away from
#: causal's sparsity over the iterations, so only this pairs it with a baseline at equal sparsity
BUDGET_MAGNITUDE = "magnitude (budget sparsity)"
DEFAULT_BASELINES = BASELINES[:3]
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
    baselines: tuple[str, ...] = DEFAULT_BASELINES

    def validate(self) -> "SweepSpec":
        if not self.l1_grid or not self.seeds:
            raise ConfigError("a sweep needs at least one --l1-grid value and one --seeds value")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ConfigError(f"unknown baseline {bad[0]!r}; choose from {', '.join(BASELINES)}")
        if BUDGET_MAGNITUDE in self.baselines and "causal-budget" not in self.baselines:
            raise ConfigError("the magnitude-budget baseline follows causal-budget runs; add causal-budget to "
                              "--baselines")
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
    digest = settings_digest(key)[:8]
    return SweepPaths.folder(base.out, base.model, base.dataset, digest)


def causal_configs(base: Config, spec: SweepSpec) -> list[Config]:
    """Main protocol first (seed-major), then the other N_iter/N_prune values."""
    main = _main(base, spec)
    protocols = [(main.n_iter, main.n_prune)]
    protocols += [(i, p) for i in (spec.n_iter_grid or (main.n_iter,)) for p in (spec.n_prune_grid or (main.n_prune,))
                  if (i, p) != protocols[0]]
    return [base.replace(method="causal", seed=s, l1_coeff=l1, n_iter=i, n_prune=p)
            for i, p in protocols for s in spec.seeds for l1 in spec.l1_grid]


def magnitude_targets(spec: SweepSpec, causal_row: dict) -> list[float]:
    """Global-magnitude target sparsities that go with one finished main causal run: the given
    grid (run once per seed, see :func:`seed_configs`), or else exactly the sparsity that run
    reached (rounded to 0.01 %, so reruns hit the same runs). Pairing each magnitude run with the
    causal run of its own seed makes "equal sparsity" exact per seed, for paired tests."""
    if spec.sparsity_grid is not None:
        return []
    return [exact_target(causal_row)]


def exact_target(row: dict) -> float:
    """The sparsity a finished run reached as a target fraction, rounded to 0.01 %."""
    return min(round(float(row["percent_pruned"]) / 100.0, 4), 0.9999)


def follower_configs(base: Config, spec: SweepSpec, causal_row: dict) -> list[tuple[str, Config]]:
    """(curve, config) of the baselines that follow one finished main-protocol causal run: global
    magnitude at its sparsity, the layer-matched baselines at its per-layer sparsities, and
    causal-budget at its L1_coeff, all on its seed."""
    main = _main(base, spec).replace(seed=causal_row["seed"])
    out = []
    for kind in spec.baselines:
        if kind == "magnitude":
            out += [(kind, main.replace(method="magnitude", target_sparsity=t))
                    for t in magnitude_targets(spec, causal_row)]
        elif kind.endswith("(layer-matched)"):
            out.append((kind, main.replace(method=kind.split()[0],
                                           match_layers=str(Path(causal_row["run_dir"]).resolve()))))
        elif kind == "causal-budget":
            out.append((kind, main.replace(method="causal-budget", l1_coeff=causal_row["l1_coeff"])))
    return out


def budget_magnitude_config(base: Config, spec: SweepSpec, budget_row: dict) -> Config:
    """Global magnitude at exactly the sparsity one finished causal-budget run reached, on its seed
    (rounded as :func:`magnitude_targets` rounds, so reruns hit the same run)."""
    return _main(base, spec).replace(seed=budget_row["seed"], method="magnitude",
                                     target_sparsity=exact_target(budget_row))


def seed_configs(base: Config, spec: SweepSpec, seed: int) -> list[tuple[str, Config]]:
    """(curve, config) of the runs a seed needs once: the unpruned reference, and global magnitude
    at each --sparsity-grid value."""
    main = _main(base, spec).replace(seed=seed)
    out = [("none", main.replace(method="none"))] if "none" in spec.baselines else []
    if "magnitude" in spec.baselines and spec.sparsity_grid is not None:
        out += [("magnitude", main.replace(method="magnitude", target_sparsity=t))
                for t in sorted(set(spec.sparsity_grid))]
    return out


def planned_count(spec: SweepSpec, n_causal: int) -> int:
    """How many runs the sweep will have (for the progress bar), before any has run."""
    n_main = len(spec.l1_grid) * len(spec.seeds)
    per_causal = sum(b in spec.baselines for b in BASELINES[1:4]) + \
        ("magnitude" in spec.baselines and spec.sparsity_grid is None) + \
        (BUDGET_MAGNITUDE in spec.baselines and "causal-budget" in spec.baselines)
    per_seed = ("none" in spec.baselines) + \
        ("magnitude" in spec.baselines and spec.sparsity_grid is not None) * len(set(spec.sparsity_grid or ()))
    return n_causal + n_main * per_causal + len(spec.seeds) * per_seed


def _one(cfg: Config, curve: str, failures: dict, shared: SharedEpochs, *, overwrite: bool, retry: bool,
         log) -> dict:
    from .experiment import Experiment

    name = cfg.run_name()
    row = {"curve": curve, "method": cfg.method, "seed": cfg.seed, "l1_coeff": cfg.l1_coeff if cfg.method.startswith("causal") else None,
           "target_sparsity": cfg.target_sparsity if cfg.target_sparsity >= 0 else None, "n_iter": cfg.n_iter,
           "n_prune": cfg.n_prune, "match_layers": cfg.match_layers, "run_dir": str(cfg.run_dir())}
    if name in failures and not (retry or overwrite):
        return {**row, "status": f"failed: {failures[name]}", "reused": True}
    reused = RunPaths(cfg.run_dir()).summary.is_file() and not overwrite
    try:
        Experiment(cfg, overwrite=overwrite, log=log, shared=shared).run()
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
    with tqdm(total=planned_count(spec, len(causal)), desc="sweep", unit="run", disable=None) as bar, \
            SharedEpochs() as shared:
        def go(cfg: Config, curve: str, main: bool) -> dict:
            row = _one(cfg, curve, failures, shared, overwrite=overwrite, retry=retry_failed, log=quiet)
            rows.append({**row, "main": main})
            write_json(fail_path, failures)
            bar.update(1)
            bar.write(_describe(row))
            return rows[-1]

        # Seed by seed, each causal run followed at once by the baselines made from it: a sweep
        # stopped half-way leaves complete groups, and iteration 1's recording is shared by them all.
        n_main = len(spec.l1_grid) * len(spec.seeds)
        for i, cfg in enumerate(causal):
            main = i < n_main
            if main and i % len(spec.l1_grid) == 0:
                for curve, other in seed_configs(base, spec, cfg.seed):
                    go(other, curve, True)
            row = go(cfg, "causal", main)
            if main and row["status"] == "ok":
                for curve, other in follower_configs(base, spec, row):
                    follower = go(other, curve, True)
                    if curve == "causal-budget" and BUDGET_MAGNITUDE in spec.baselines and follower["status"] == "ok":
                        go(budget_magnitude_config(base, spec, follower), BUDGET_MAGNITUDE, True)
    write_sweep_outputs(rows, out, base, spec)
    return rows, out


def _describe(row: dict) -> str:
    where = f"l1={row['l1_coeff']:.1e}" if row["l1_coeff"] is not None else \
        f"S={100 * row['target_sparsity']:.2f}%" if row["target_sparsity"] is not None else \
        f"match {Path(row['match_layers']).name}" if row["match_layers"] else "unpruned"
    head = f"{row['curve']:<26} seed {row['seed']} {where}"
    if row["status"] != "ok":
        return f"{head}: {row['status']}"
    return (f"{head}: {row['percent_pruned']:.2f}% pruned, test accuracy {row['test_accuracy']:.2f}%"
            + (" (reused)" if row["reused"] else ""))
