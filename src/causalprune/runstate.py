"""Progress of a run folder: which stages are finished, and the long-format metrics.

``state.json`` is the single source of truth for resuming. A stage first writes its outputs
(checkpoint, masks) atomically and only then marks itself done in ``state.json`` (also atomic),
so a kill between the two merely repeats that stage. Metrics rows beyond the count recorded in
``state.json`` belong to an unfinished stage and are dropped on resume.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from .errors import CheckpointError
from .paths import RunPaths
from .storage import read_json, write_json, write_text

__all__ = ["RunState", "METRIC_COLUMNS"]

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
