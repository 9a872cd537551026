"""Run the ``causal-prune`` command line with pause points, so that a test can SIGKILL it at a known stage.

    python tests/harness.py run --preset quick ...            # one process
    python -m torch.distributed.run ... tests/harness.py run ...   # DDP ranks

It is the real CLI (``causalprune.cli.main``) with observers attached from outside the package:
an ``ExperimentCallback`` for the training stages, and wrappers around the atomic write, the
state commit and the mask agreement. Two environment variables drive it:

* ``CAUSALPRUNE_TEST_PAUSE_AT=<point>``: when the run passes ``<point>``, print
  ``CAUSALPRUNE-PAUSED <point>`` on stderr and sleep until killed. Points:

  * ``pretrain:E`` / ``record:I.E`` / ``post:E``: after the 2nd optimizer step of pretraining
    epoch E / of recorded SGD epoch E of pruning iteration I / of post-training epoch E;
  * ``lasso:I``: the recording of iteration I is complete and the Lasso is about to run;
  * ``write:NAME``: the first atomic write of a file called NAME has filled its temporary file
    but not yet renamed it over NAME;
  * ``commit:KEY=VALUE``: a stage has written its outputs and is about to mark itself done in
    state.json (e.g. ``commit:iterations_done=1``), the narrowest window a kill can hit.

* ``CAUSALPRUNE_DEBUG_RANK_MASKS=<folder>``: every rank saves the masks it computed, before the
  ranks agree on them, as ``rank<r>-iter_<i>.safetensors``, and its final masks as
  ``rank<r>-final.safetensors``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ENV = "CAUSALPRUNE_TEST_PAUSE_AT"
MASKS_ENV = "CAUSALPRUNE_DEBUG_RANK_MASKS"
MARKER = "CAUSALPRUNE-PAUSED"
PAUSE_STEP = 2  # pause after this many optimizer steps of the chosen epoch


def process_env(point: str | None) -> dict[str, str]:
    """The environment of a harness process that pauses at ``point`` (None: runs through)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    # One thread everywhere: CPU results are bit-reproducible for a fixed thread count.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    if point:
        env[ENV] = point
    return env


def pause_point(stage: str, index: Any) -> None:
    """Sleep (until killed) if ``CAUSALPRUNE_TEST_PAUSE_AT`` equals ``stage:index``."""
    point = f"{stage}:{index}"
    if os.environ.get(ENV) != point:
        return
    print(f"{MARKER} {point}", file=sys.stderr, flush=True)
    time.sleep(3600)
    os._exit(3)  # nobody killed us: leave without touching the run folder, like a kill would


class _PauseAfterSteps:
    def __init__(self, stage: str, index: str):
        self.stage, self.index, self.steps = stage, index, 0

    def after_step(self, loss) -> None:
        self.steps += 1
        if self.steps == PAUSE_STEP:
            pause_point(self.stage, self.index)


def install() -> None:
    """Attach the pause points and the mask dumps to the package (a no-op for unset variables)."""
    import causalprune.dist.agree as agree
    import causalprune.experiment as experiment
    import causalprune.runstate as runstate
    import causalprune.storage as storage
    from causalprune.masks import current_masks, save_masks

    class Pauses(experiment.ExperimentCallback):
        def epoch_callbacks(self, stage: str, index: str) -> list:
            return [_PauseAfterSteps(stage, index)] if os.environ.get(ENV) == f"{stage}:{index}" else []

        def before_decide(self, iteration: int) -> None:
            pause_point("lasso", iteration)

    init = experiment.Experiment.__init__

    def init_with_pauses(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.callbacks.append(Pauses())

    experiment.Experiment.__init__ = init_with_pauses

    flush = storage._flush

    def flush_then_pause(file: Path) -> None:
        flush(file)
        name = file.name[1:].rsplit(".", 2)[0]  # .<name>.<random>.tmp
        pause_point("write", name)

    storage._flush = flush_then_pause

    commit = runstate.RunState.commit

    def pause_then_commit(self, **updates):
        if os.environ.get(ENV, "").startswith("commit:"):
            for key, value in updates.items():
                if key.endswith("done"):
                    pause_point("commit", f"{key}={value}")
        commit(self, **updates)

    runstate.RunState.commit = pause_then_commit

    folder = os.environ.get(MASKS_ENV)
    if folder:
        from causalprune.dist import rank

        agree_on_masks = agree.agree_on_masks

        def dump_then_agree(masks, tag=""):
            if tag:
                save_masks(Path(folder) / f"rank{rank()}-{tag}.safetensors", masks)
            return agree_on_masks(masks, tag)

        agree.agree_on_masks = dump_then_agree
        finish = experiment.Experiment.finish

        def finish_then_dump(self):
            summary = finish(self)
            save_masks(Path(folder) / f"rank{rank()}-final.safetensors", current_masks(self.model))
            return summary

        experiment.Experiment.finish = finish_then_dump


if __name__ == "__main__":
    install()
    from causalprune.cli import main

    sys.exit(main(sys.argv[1:]))
