"""Every file name inside a run folder, in one place."""

from __future__ import annotations

from pathlib import Path

__all__ = ["RunPaths"]


class RunPaths:
    """Paths of one run folder ``<out>/<run-name>/``. Nothing else builds file names."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # configuration and results
    @property
    def config(self) -> Path: return self.root / "config.json"
    @property
    def metrics(self) -> Path: return self.root / "metrics.csv"
    @property
    def summary(self) -> Path: return self.root / "summary.json"
    @property
    def state(self) -> Path: return self.root / "state.json"
    @property
    def log(self) -> Path: return self.root / "log.txt"
    @property
    def tensorboard(self) -> Path: return self.root / "tensorboard"
    @property
    def analysis(self) -> Path: return self.root / "analysis"
    @property
    def structure(self) -> Path: return self.root / "pruned_channels.json"

    # checkpoints
    @property
    def checkpoints(self) -> Path: return self.root / "checkpoints"
    @property
    def init(self) -> Path: return self.checkpoints / "init.pt"
    @property
    def pretrained(self) -> Path: return self.checkpoints / "pretrained.pt"
    def pruned(self, it: int) -> Path: return self.checkpoints / f"iter_{it:02d}.pt"
    def post_epoch(self) -> Path: return self.checkpoints / "post_last.pt"
    @property
    def best(self) -> Path: return self.checkpoints / "best.pt"
    @property
    def final(self) -> Path: return self.checkpoints / "final.pt"

    # masks and Lasso results
    @property
    def masks_dir(self) -> Path: return self.root / "masks"
    def masks(self, it: int) -> Path: return self.masks_dir / f"iter_{it:02d}.safetensors"
    @property
    def final_masks(self) -> Path: return self.masks_dir / "final.safetensors"
    def gammas(self, it: int) -> Path: return self.root / "gammas" / f"iter_{it:02d}.safetensors"
    def recording(self, it: int) -> Path: return self.root / "recording" / f"iter_{it:02d}"

    # figures and tables of multi-run commands
    def file(self, name: str) -> Path: return self.root / name
