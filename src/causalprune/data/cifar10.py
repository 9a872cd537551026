"""CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test, 3x32x32, 10 classes.

Read with ``torchvision.datasets.CIFAR10`` from ``data_dir`` (or ``~/.cache/causalprune/data``);
if it is missing or corrupt, one download is tried. Random horizontal flips and the mean/std of
docs/method.md §6.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .sets import ArraySet, Source, one_line

__all__ = ["load_cifar10", "MEAN", "STD"]

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
CACHE_DIR = Path("~/.cache/causalprune/data")
ARCHIVE = "cifar-10-python.tar.gz"


def _open(root: Path, train: bool):
    import torchvision

    try:
        return torchvision.datasets.CIFAR10(str(root), train=train, download=False)
    except RuntimeError:
        pass  # not there yet, or a corrupt batch file: one download attempt below
    try:
        return torchvision.datasets.CIFAR10(str(root), train=train, download=True)
    except Exception as exc:  # offline, partial archive (md5 mismatch), full disk
        reason = one_line(exc)
        raise DataError(
            f"CIFAR-10 is missing or corrupt in {root} and the download failed ({reason}); if "
            f"{root / ARCHIVE} is a partial download delete it and retry, or pass --data-dir with the "
            "extracted cifar-10-batches-py folder in it"
        ) from None


def _to_set(ds) -> ArraySet:
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC uint8 -> NCHW
    return ArraySet(images, torch.as_tensor(ds.targets, dtype=torch.int64))


def load_cifar10(*, data_dir: str | None = None, **_) -> Source:
    """CIFAR-10 as a :class:`Source` of uint8 (N, 3, 32, 32) tensors."""
    root = Path(data_dir).expanduser() if data_dir else CACHE_DIR.expanduser()
    train, test = _to_set(_open(root, True)), _to_set(_open(root, False))
    return Source(train=train, test=test, channels=3, size=32, num_classes=10, mean=MEAN, std=STD,
                  flip=True, origin=str(root))
