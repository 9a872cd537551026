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
            self.data.update(read_json(paths.state))
            self.rows = self._read_rows()[: self.data["metrics_rows"]]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def _read_rows(self) -> list[tuple]:
        if not self.paths.metrics.exists():
            return []
        with open(self.paths.metrics, newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            return [tuple(r) for r in reader]

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
