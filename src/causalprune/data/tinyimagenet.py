"""TinyImageNet-200: 100,000 train / 10,000 val images, 3x64x64, 200 classes.

The standard ``tiny-imagenet-200`` folder: ``train/<wnid>/images/*.JPEG``; ``val/images/*.JPEG``
labelled by ``val/val_annotations.txt`` (tab separated: file, wnid, box). Its labelled val split
is our test set (the official test split has no labels); our validation split comes from train.
Class order: ``wnids.txt`` if present, else the sorted train folders. Some images are
greyscale JPEGs; all are decoded as RGB. Flips and mean/std per docs/method.md §6.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .imagefolder import image_files, require_dir
from .sets import FileSet, Source

__all__ = ["load_tinyimagenet", "MEAN", "STD"]

MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2764, 0.2689, 0.2816)
HOW = "download http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it and pass --data-dir"


def _root(data_dir: str | None) -> Path:
    if not data_dir:
        raise DataError(f"tinyimagenet needs --data-dir; {HOW}")
    root = Path(data_dir).expanduser()
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    require_dir(root, "TinyImageNet folder")
    require_dir(root / "train", "TinyImageNet training folder")
    return root


def _classes(root: Path) -> list[str]:
    wnids = root / "wnids.txt"
    if wnids.is_file():
        classes = [ln.strip() for ln in wnids.read_text().splitlines() if ln.strip()]
    else:
        classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{root} lists no classes (empty wnids.txt and no train/<wnid>/ folders); {HOW}")
    return classes


def _train(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for i, wnid in enumerate(classes):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            folder = folder.parent
        files = image_files(folder) if folder.is_dir() else []
        if not files:
            raise DataError(f"class {wnid} has no images in {folder}; the TinyImageNet copy is incomplete, {HOW}")
        paths += [str(p) for p in files]
        labels += [i] * len(files)
    return paths, labels


def _val(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann} is missing; the TinyImageNet copy is incomplete, {HOW}")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{ann} line {n} is malformed or names an unknown class: {line[:60]!r}")
        paths.append(str(root / "val" / "images" / fields[0]))
        labels.append(index[fields[1]])
    if not paths:
        raise DataError(f"{ann} is empty; {HOW}")
    return paths, labels


def load_tinyimagenet(*, data_dir: str | None = None, **_) -> Source:
    """TinyImageNet as a :class:`Source` of :class:`FileSet` splits (decoded to 3x64x64 uint8)."""
    root = _root(data_dir)
    classes = _classes(root)
    (paths, labels), (vpaths, vlabels) = _train(root, classes), _val(root, classes)
    return Source(train=FileSet(paths, torch.tensor(labels), 3, 64),
                  test=FileSet(vpaths, torch.tensor(vlabels), 3, 64),
                  channels=3, size=64, num_classes=len(classes), mean=MEAN, std=STD, flip=True,
                  origin=str(root))
