"""Every file name the package writes, in one place: a run folder, and the folders of the
multi-run commands (sweep, compare, table2, masks)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["RunPaths", "PretrainPaths", "SweepPaths", "ComparePaths", "Table2Paths", "OverlapPaths"]


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
    def layer_sparsity(self) -> Path: return self.root / "layer_sparsity.csv"
    @property
    def state(self) -> Path: return self.root / "state.json"
    @property
    def lock(self) -> Path: return self.root / ".lock"

    def owned(self) -> list[Path]:
        """Every entry a run writes at the top of its folder: all that --overwrite may remove and
        all that is searched for a killed writer's temporaries. Nothing else is ever touched."""
        return [self.config, self.metrics, self.summary, self.layer_sparsity, self.state, self.log, self.tensorboard, self.analysis,
                self.structure, self.shrunk_widths, self.checkpoints, self.masks_dir, self.gammas(1).parent,
                self.recording(1).parent, self.export("masks", "pt").parent]
    @property
    def log(self) -> Path: return self.root / "log.txt"
    @property
    def tensorboard(self) -> Path: return self.root / "tensorboard"
    @property
    def analysis(self) -> Path: return self.root / "analysis"
    @property
    def eigenvalues(self) -> Path: return self.analysis / "eigenvalues.json"
    @property
    def landscape_npz(self) -> Path: return self.analysis / "landscape.npz"
    @property
    def landscape_png(self) -> Path: return self.analysis / "landscape.png"
    @property
    def landscape_meta(self) -> Path: return self.analysis / "landscape.json"
    @property
    def structure(self) -> Path: return self.root / "pruned_channels.json"
    @property
    def shrunk_widths(self) -> Path: return self.root / "shrunk.json"

    # checkpoints
    @property
    def checkpoints(self) -> Path: return self.root / "checkpoints"
    @property
    def init(self) -> Path: return self.checkpoints / "init.pt"
    @property
    def pretrained(self) -> Path: return self.checkpoints / "pretrained.pt"
    def pruned(self, it: int) -> Path: return self.checkpoints / f"iter_{it:02d}.pt"
    # Resume points inside a training stage (model + optimizer state after epoch `ep`). Each
    # epoch gets its own file, so the one state.json points at is never overwritten before
    # state.json itself moves on (a kill in between must not pair epoch ep's weights with ep-1).
    def pre_epoch(self, ep: int) -> Path: return self.checkpoints / f"pre_epoch_{ep:03d}.pt"
    def post_epoch(self, ep: int) -> Path: return self.checkpoints / f"post_epoch_{ep:03d}.pt"
    @property
    def best(self) -> Path: return self.checkpoints / "best.pt"
    @property
    def final(self) -> Path: return self.checkpoints / "final.pt"
    @property
    def shrunk(self) -> Path: return self.checkpoints / "shrunk.pt"

    # masks and Lasso results
    @property
    def masks_dir(self) -> Path: return self.root / "masks"
    def masks(self, it: int) -> Path: return self.masks_dir / f"iter_{it:02d}.safetensors"
    @property
    def final_masks(self) -> Path: return self.masks_dir / "final.safetensors"
    def gammas(self, it: int) -> Path: return self.root / "gammas" / f"iter_{it:02d}.safetensors"
    def recording(self, it: int) -> Path: return self.root / "recording" / f"iter_{it:02d}"
    # A recording over the memory budget, spilled to disk (spill.py); deleted after the Lasso.
    def spill(self, it: int, rank: int = 0) -> Path:
        return self.root / "recording" / f"iter_{it:02d}.rank{rank}.spill"

    # `causal-prune export` outputs: masks or a pruned state_dict, .safetensors or .pt
    def export(self, what: str, fmt: str, it: int | None = None) -> Path:
        suffix = "safetensors" if fmt == "safetensors" else "pt"
        return self.root / "export" / f"{what}{'' if it is None else f'_iter_{it:02d}'}.{suffix}"


class PretrainPaths:
    """Where the shared pretraining stages live (pretrain.py); each stage folder is laid out as a
    run folder (:class:`RunPaths`)."""

    DIRNAME = "pretrained"

    @staticmethod
    def folder(out: str | Path, model: str, dataset: str, seed: int, digest: str) -> Path:
        return Path(out) / PretrainPaths.DIRNAME / f"{model}-{dataset}-s{seed}-{digest}"


class _Folder:
    def __init__(self, root: str | Path):
        self.root = Path(root)


class SweepPaths(_Folder):
    """``causal-prune sweep``: one row per run, the phase-transition figure and its widths."""

    @staticmethod
    def folder(out: str | Path, model: str, dataset: str, digest: str) -> Path:
        return Path(out) / f"sweep-{model}-{dataset}-{digest}"

    @property
    def csv(self) -> Path: return self.root / "sweep.csv"
    @property
    def json(self) -> Path: return self.root / "sweep.json"
    @property
    def failures(self) -> Path: return self.root / "failures.json"
    @property
    def phase_png(self) -> Path: return self.root / "phase.png"
    @property
    def phase_width(self) -> Path: return self.root / "phase_width.json"
    @property
    def hparams_png(self) -> Path: return self.root / "hparams.png"
    # Not written by the sweep: where its closing line suggests `causal-prune report` write the page.
    @property
    def report_html(self) -> Path: return self.root / "report.html"


class ComparePaths(_Folder):
    """``causal-prune compare``: none, magnitude and causal side by side."""

    @staticmethod
    def folder(out: str | Path, model: str, dataset: str, seed: int, digest: str) -> Path:
        return Path(out) / f"compare-{model}-{dataset}-s{seed}-{digest}"

    @property
    def csv(self) -> Path: return self.root / "comparison.csv"
    @property
    def md(self) -> Path: return self.root / "comparison.md"
    @property
    def png(self) -> Path: return self.root / "comparison.png"


class Table2Paths(_Folder):
    """``causal-prune table2``: the paper's Table 2 for one data set."""

    @staticmethod
    def folder(out: str | Path, dataset: str) -> Path:
        return Path(out) / f"table2-{dataset}"

    @property
    def md(self) -> Path: return self.root / "table2.md"
    @property
    def csv(self) -> Path: return self.root / "table2.csv"


class OverlapPaths(_Folder):
    """``causal-prune masks``: pairwise overlaps of the runs' pruned weights."""

    @property
    def csv(self) -> Path: return self.root / "overlaps.csv"
    @property
    def per_layer_csv(self) -> Path: return self.root / "overlaps_per_layer.csv"
    @property
    def png(self) -> Path: return self.root / "overlaps.png"
