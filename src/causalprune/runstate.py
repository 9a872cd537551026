"""A run folder: claiming it (:func:`prepare_run_dir`), and its progress (:class:`RunState`: which
stages are finished, and the long-format metrics).

``state.json`` is the single source of truth for resuming. A stage first writes its outputs
(checkpoint, masks) atomically and only then marks itself done in ``state.json`` (also atomic),
so a kill between the two merely repeats that stage. Metrics rows beyond the count recorded in
``state.json`` belong to an unfinished stage and are dropped on resume.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from . import dist as ddp
from .config import Config, config_from_dict, diff_configs
from .errors import CheckpointError, ConfigError
from .paths import RunPaths
from .storage import (
    FolderLock,
    clear_folder,
    is_temporary,
    lock_folder,
    read_json,
    remove_stale_temporaries,
    write_json,
    write_text,
)

__all__ = ["RunState", "METRIC_COLUMNS", "prepare_run_dir"]

METRIC_COLUMNS = ("phase", "iteration", "epoch", "step", "name", "value")


class RunState:
    def __init__(self, paths: RunPaths):
        self.paths = paths
        self.data: dict[str, Any] = {
            "pretrain_epochs_done": 0, "pretrain_done": False, "iterations_done": 0, "iterations": [],
            "post_epochs_done": 0, "post_done": False, "done": False, "metrics_rows": 0,
            "wall_seconds": 0.0,
        }
        self.rows: list[tuple] = []
        if paths.state.exists():
            saved = read_json(paths.state)
            if not isinstance(saved, dict):
                raise CheckpointError(f"{paths.state} is not a run state; restore it, or pass --overwrite "
                                      "to recompute this run from the start")
            self.data.update(saved)
            rows = self._read_rows()
            if len(rows) < self.data["metrics_rows"]:
                # Rows are only ever appended through an atomic rewrite, so fewer rows than
                # state.json counts means the file was damaged: refuse rather than lose them.
                raise CheckpointError(f"{paths.metrics} has {len(rows)} rows but {paths.state} counts "
                                      f"{self.data['metrics_rows']}; restore it, or pass --overwrite to "
                                      "recompute this run from the start")
            self.rows = rows[: self.data["metrics_rows"]]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def _read_rows(self) -> list[tuple]:
        if not self.paths.metrics.exists():
            return []
        try:
            with open(self.paths.metrics, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                next(reader, None)
                rows = [tuple(r) for r in reader]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.paths.metrics} is not a readable CSV file ({exc}); restore it, "
                                  "or pass --overwrite to recompute this run from the start") from None
        if any(len(r) != len(METRIC_COLUMNS) for r in rows):
            raise CheckpointError(f"{self.paths.metrics} has rows that are not {len(METRIC_COLUMNS)} columns; "
                                  "restore it, or pass --overwrite to recompute this run from the start")
        return rows

    def log(self, phase: str, iteration: int, epoch: int, step: int, name: str, value: float) -> None:
        self.rows.append((phase, iteration, epoch, step, name, f"{float(value):.10g}"))

    def commit(self, **updates: Any) -> None:
        """Write the metrics, then mark ``updates`` as done: both atomically, in that order."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        writer.writerows(self.rows)
        write_text(self.paths.metrics, buf.getvalue())
        self.data.update(updates)
        self.data["metrics_rows"] = len(self.rows)
        write_json(self.paths.state, self.data)


def _is_ours(paths: RunPaths, cfg: Config) -> bool:
    """Whether ``paths.root`` may be written, cleaned or cleared by this run: it does not exist, holds
    nothing but a lock and temporaries, or holds a config.json of ours that names this folder."""
    if not paths.root.exists():
        return True
    if not paths.root.is_dir():
        return False
    if all(e == paths.lock or is_temporary(e) for e in paths.root.iterdir()):
        return True
    try:
        values = read_json(paths.config)
    except CheckpointError:  # config.json is there but damaged
        # A damaged run of ours: resuming names the damaged file, --overwrite rewrites it.
        return paths.state.is_file()
    except OSError:  # no config.json
        return False
    try:
        saved = config_from_dict(values)
    except ConfigError:  # not our settings
        return False
    return saved.replace(out=cfg.out).run_name() == paths.root.name


def prepare_run_dir(cfg: Config, overwrite: bool) -> tuple[RunPaths, FolderLock | None]:
    """Create the run folder, or check that an existing one holds the same configuration; returns
    its paths and its lock (rank 0 only), which the caller releases when the run ends.

    A folder that is not one of ours (a user's folder reached through --out and --name) is refused
    before anything is written into it, and only the entries a run writes are ever removed.
    """
    paths = RunPaths(cfg.run_dir())
    if not _is_ours(paths, cfg):
        raise ConfigError(f"{paths.root} exists and is not this run's folder (it holds no config.json of this "
                          "configuration); nothing was changed. Choose another --name or --out")
    lock = None
    if ddp.is_main():
        # One process per run folder; then any temporary file in it is a killed writer's leftover.
        lock = lock_folder(paths.lock)
    try:
        if ddp.is_main():
            remove_stale_temporaries(paths.root, paths.owned())
        if paths.config.exists() and not overwrite:
            saved = read_json(paths.config)
            differing = diff_configs(saved, cfg)
            if differing:
                detail = ", ".join(f"{k} ({saved.get(k)!r} -> {getattr(cfg, k)!r})" for k in differing)
                raise ConfigError(f"{paths.root} holds a run with different settings: {detail}; "
                                  "pass --overwrite to start it afresh or change --out")
        elif overwrite and paths.root.exists() and ddp.is_main():
            clear_folder(paths.owned())
        ddp.barrier()
        if ddp.is_main():
            paths.root.mkdir(parents=True, exist_ok=True)
            write_json(paths.config, cfg.to_dict())
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return paths, lock
