"""Test-only pause points, used by tests/test_kill_resume.py to SIGKILL a run at a known stage.

Inert unless the environment variable ``CAUSALPRUNE_TEST_PAUSE_AT`` is set. When it names the
point being passed (``<stage>:<index>``), the process prints ``CAUSALPRUNE-PAUSED <point>`` on
stderr and sleeps, so that a test can kill it there instead of guessing from timings.

Points (see docs/reliability.md):

* ``pretrain:E`` / ``record:I.E`` / ``post:E``: after the 2nd optimizer step of pretraining
  epoch E / of recorded SGD epoch E of pruning iteration I / of post-training epoch E;
* ``lasso:I``: the recording of iteration I is complete and the Lasso is about to run;
* ``write:NAME``: the first atomic write of a file called NAME has filled its temporary file
  but not yet renamed it over NAME;
* ``commit:KEY=VALUE``: a stage has written its outputs and is about to mark itself done in
  state.json (e.g. ``commit:iterations_done=1``), the narrowest window a kill can hit.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch

__all__ = ["ENV", "MARKER", "pause_point", "pause_callbacks", "pause_before_commit"]

ENV = "CAUSALPRUNE_TEST_PAUSE_AT"
MARKER = "CAUSALPRUNE-PAUSED"
_PAUSE_STEP = 2  # pause after this many optimizer steps of the chosen epoch


def pause_point(stage: str, index: Any) -> None:
    """Sleep (until killed) if ``CAUSALPRUNE_TEST_PAUSE_AT`` equals ``stage:index``."""
    point = f"{stage}:{index}"
    if os.environ.get(ENV) != point:
        return
    print(f"{MARKER} {point}", file=sys.stderr, flush=True)
    time.sleep(3600)
    # Nobody killed us: leave without touching the run folder, like a kill would.
    os._exit(3)


class _PauseAfterSteps:
    def __init__(self, stage: str, index: Any):
        self.stage, self.index, self.steps = stage, index, 0

    def after_step(self, loss: torch.Tensor) -> None:
        self.steps += 1
        if self.steps == _PAUSE_STEP:
            pause_point(self.stage, self.index)


def pause_callbacks(stage: str, index: Any) -> list:
    """Train-loop callbacks pausing mid-epoch at ``stage:index``; empty (no cost) normally."""
    if os.environ.get(ENV) != f"{stage}:{index}":
        return []
    return [_PauseAfterSteps(stage, index)]


def pause_before_commit(updates: dict[str, Any]) -> None:
    """Pause point ``commit:KEY=VALUE`` for every ``*done`` key a state commit is about to set."""
    if not os.environ.get(ENV, "").startswith("commit:"):
        return
    for key, value in updates.items():
        if key.endswith("done"):
            pause_point("commit", f"{key}={value}")
