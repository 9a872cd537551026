"""The pretraining stage, computed once and shared by every run that needs the same weights.

Algorithm 1 line 1 (N_pre epochs of Adam, docs/method.md §3) depends on a few settings only:
:data:`PRETRAIN_KEYS` and the kind of device. Every method, L1_coeff, target sparsity and
protocol that agrees on them starts from the same pretrained weights, so they are trained once, in
``<out>/pretrained/<model>-<dataset>-s<seed>-<hash>/``, and each run copies the finished
``pretrained.pt`` into its own folder (its rewinds read it there, so a run folder stays complete).

The stage folder has the layout of a run folder (``state.json``, ``metrics.csv``, per-epoch
checkpoints), so a killed stage resumes from its last finished epoch, and only a finished stage is
ever reused. Its lock is *waited for*: a run that needs a stage another process is computing waits
and then reuses it.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .config import Config, settings_digest
from .errors import ConfigError
from .paths import PretrainPaths, RunPaths
from .storage import is_temporary, read_json

__all__ = ["PRETRAIN_KEYS", "pretrain_key", "stage_paths", "check_stage"]

# Every setting the pretrained weights depend on (the device kind is added: CPU and CUDA round
# differently). max_steps_per_epoch caps the pretraining epochs too; pipeline fixes how batches
# are drawn.
PRETRAIN_KEYS = ("model", "dataset", "seed", "n_pre", "lr_train", "batch_size", "val_frac",
                 "max_steps_per_epoch", "pipeline")


def pretrain_key(cfg: Config, device: torch.device) -> dict[str, Any]:
    return {**{k: getattr(cfg, k) for k in PRETRAIN_KEYS}, "device": torch.device(device).type}


def stage_paths(cfg: Config, device: torch.device) -> RunPaths:
    """The stage folder of ``cfg``'s pretraining (its files are named as in a run folder)."""
    digest = settings_digest(pretrain_key(cfg, device))[:8]
    return RunPaths(PretrainPaths.folder(cfg.out, cfg.model, cfg.dataset, cfg.seed, digest))


def check_stage(paths: RunPaths, key: dict[str, Any]) -> None:
    """Refuse a stage folder that is not ours or holds another key (never write into it)."""
    root = paths.root
    if not root.exists() or all(e == paths.lock or is_temporary(e) for e in root.iterdir()):
        return
    try:
        saved = read_json(paths.config)
    except (OSError, ConfigError, ValueError):
        saved = None
    if saved != json.loads(json.dumps(key, default=str)):
        raise ConfigError(f"{root} exists but is not the pretraining stage of this run; nothing was changed. "
                          "Move it away, or pass another --out")

