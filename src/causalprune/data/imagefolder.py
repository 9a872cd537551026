"""Any folder of images: ``<data_dir>/train/<class>/*`` and ``<data_dir>/test/<class>/*``.

Classes are the sorted sub-folder names of ``train``. Channels come from the first training
image (greyscale modes give 1, everything else 3) and so does the stored size (its side, the
shorter side if it is not square); every image is resized to that square on decoding.
Normalisation uses per-channel mean/std of the training images (of at most ``STATS_SAMPLES``
of them, picked by a fixed permutation, so the statistics do not depend on the run seed or the
pipeline). Training batches get random horizontal flips.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .sets import FileSet, Source, channel_stats, materialise

__all__ = ["load_imagefolder", "scan_classes", "require_dir", "IMAGE_SUFFIXES", "STATS_SAMPLES"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
STATS_SAMPLES = 5000
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F", "La"}


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} {path} does not exist or is not a folder; check --data-dir")
    return path


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_classes(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[str], list[int]]:
    """(classes, paths, labels) of ``root/<class>/*``; ``classes`` fixes the label order if given."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"{root} has no class sub-folders; put the images in {root}/<class>/")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has classes not in the training set: {', '.join(unknown[:5])}; remove or rename them")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for c in found:
        files = image_files(root / c)
        paths += [str(p) for p in files]
        labels += [index[c]] * len(files)
    if not paths:
        raise DataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); check --data-dir")
    return classes, paths, labels


def _first_image_shape(path: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            channels = 1 if img.mode in _GREY_MODES else 3
            return channels, min(img.size)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc}); delete or replace it") from None


def stats_of(data: FileSet, workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of up to STATS_SAMPLES training images (a fixed, seed-independent sample)."""
    n = len(data)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:STATS_SAMPLES].sort().values
    sample = materialise(data.subset(idx), workers if n > 512 else 0, "image statistics")
    return channel_stats(sample.images, 1.0 / 255.0)


def load_imagefolder(*, data_dir: str | None = None, workers: int = 0, **_) -> Source:
    """A train/test image folder as a :class:`Source` of :class:`FileSet` splits."""
    if not data_dir:
        raise DataError("imagefolder needs --data-dir pointing at a folder with train/<class>/ and test/<class>/")
    root = require_dir(Path(data_dir).expanduser(), "data folder")
    classes, paths, labels = scan_classes(require_dir(root / "train", "training folder"))
    _, tpaths, tlabels = scan_classes(require_dir(root / "test", "test folder"), classes)
    channels, size = _first_image_shape(paths[0])
    train = FileSet(paths, torch.tensor(labels), channels, size)
    test = FileSet(tpaths, torch.tensor(tlabels), channels, size)
    mean, std = stats_of(train, workers)
    return Source(train=train, test=test, channels=channels, size=size, num_classes=len(classes),
                  mean=mean, std=std, flip=True, origin=str(root))
