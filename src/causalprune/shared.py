"""Record once, solve many: iteration 1's pruning epochs, shared by the runs of one sweep or comparison.

From the same pretrained weights and the same batches, iteration 1's N_prune SGD epochs (Algorithm 1
lines 3-4) are identical for every method and every L1_coeff: every mask is still all ones, magnitude
and random rank the weights left by those epochs, and causal pruning fits eq. (9) on their recording.
Only the decision differs. So a multi-run command (``sweep``, ``compare``, ``table2``) hands one
:class:`SharedEpochs` to all its runs: the first run of a key trains and records, and every later run
with that key takes the weights and the recording and only decides (one Lasso per L1_coeff).
Iterations 2.. start from different masks and are trained and recorded per run, as before.

The share lives in memory, for one process: a killed sweep records iteration 1 again when it resumes,
and a run never depends on another run's folder. It is off under DDP, for the online solver (it fits
while training, so there is no recording to share) and for a recording spilled to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Config, settings_digest
from .pretrain import pretrain_key

__all__ = ["SharedEpochs", "FirstEpochs", "EPOCH_KEYS"]

# Beyond the pretraining key: everything the SGD epochs and the recording depend on.
EPOCH_KEYS = ("lr_prune", "momentum", "n_prune", "loss_samples", "record_dtype")


@dataclass
class FirstEpochs:
    """What iteration 1's epochs left: the model's state after them (a CPU copy), their metrics rows,
    and their recording when a recording method ran them."""

    state: dict[str, torch.Tensor]
    rows: list[tuple]
    recording: object | None = None


class SharedEpochs:
    """Iteration 1's epochs by key; the most recent recording is kept (older ones are freed, so a
    sweep over seeds holds one recording at a time)."""

    def __init__(self) -> None:
        self._entries: dict[str, FirstEpochs] = {}

    @staticmethod
    def key(cfg: Config, device: torch.device) -> str:
        key = {**pretrain_key(cfg, device), **{k: getattr(cfg, k) for k in EPOCH_KEYS}}
        return settings_digest(key)

    def get(self, cfg: Config, device: torch.device, *, needs_recording: bool) -> FirstEpochs | None:
        entry = self._entries.get(self.key(cfg, device))
        if entry is None or (needs_recording and entry.recording is None):
            return None
        return entry

    def put(self, cfg: Config, device: torch.device, entry: FirstEpochs) -> None:
        if entry.recording is not None:
            for other in self._entries.values():
                self._free(other)
        self._entries[self.key(cfg, device)] = entry

    def close(self) -> None:
        """Free every recording held (the command is done)."""
        for entry in self._entries.values():
            self._free(entry)
        self._entries.clear()

    @staticmethod
    def _free(entry: FirstEpochs) -> None:
        if entry.recording is not None:
            entry.recording.free()
            entry.recording = None

    def __enter__(self) -> "SharedEpochs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
