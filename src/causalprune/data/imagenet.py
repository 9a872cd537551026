"""ImageNet (ILSVRC-2012) through ``torchvision.datasets.ImageNet`` (needs the devkit archive
and the train/val folders in ``data_dir``). Too large for the device pipeline: decoded by
DataLoader workers with the standard transforms: training = random resized crop to 224
(scale 0.08-1, aspect 3/4-4/3) plus the pipeline's horizontal flip; evaluation = resize the
shorter side to 256 and centre-crop 224. The crop of a sample is drawn from a per-sample seed
that the epoch plan supplies, so an epoch is still a pure function of its seed.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from ..errors import DataError
from .sets import FileSet, Source, one_line, split_key, to_chw

__all__ = ["load_imagenet", "ImageNetSet", "random_resized_box", "MEAN", "STD"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE, RESIZE = 224, 256


def random_resized_box(width: int, height: int, rng: random.Random,
                       scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, w, h) of an Inception-style random crop; falls back to a centre crop."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


class ImageNetSet(FileSet):
    """Files decoded with ImageNet's train (random crop) or eval (resize + centre crop) transform."""

    def __init__(self, paths, labels, train: bool) -> None:
        super().__init__(paths, labels, 3, SIZE)
        self.train = train
        self.needs_seed = train

    def eval_view(self) -> "ImageNetSet":
        view = self.subset(torch.arange(len(self)))
        view.train = view.needs_seed = False
        return view

    def __getitem__(self, key):
        from PIL import Image

        i, seed = split_key(key)
        img = self.open(i)
        if self.train:
            left, top, w, h = random_resized_box(*img.size, random.Random(seed))
            img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(left, top, left + w, top + h))
        else:
            w, h = img.size
            s = RESIZE / min(w, h)
            img = img.resize((max(SIZE, round(w * s)), max(SIZE, round(h * s))), Image.BILINEAR)
            left, top = (img.size[0] - SIZE) // 2, (img.size[1] - SIZE) // 2
            img = img.crop((left, top, left + SIZE, top + SIZE))
        return to_chw(img), self.labels[i]


def _split(root: Path, split: str):
    import torchvision

    try:
        return torchvision.datasets.ImageNet(str(root), split=split)
    except Exception as exc:  # missing devkit / folders, unreadable meta
        reason = one_line(exc)
        raise DataError(f"cannot open ImageNet {split} in {root} ({reason}); --data-dir must hold "
                        "ILSVRC2012_devkit_t12.tar.gz and the train/ and val/ folders (or their archives)") from None


def load_imagenet(*, data_dir: str | None = None, **_) -> Source:
    """ImageNet as a :class:`Source` (workers pipeline only)."""
    if not data_dir:
        raise DataError("imagenet needs --data-dir with torchvision's ImageNet layout")
    root = Path(data_dir).expanduser()
    train, val = _split(root, "train"), _split(root, "val")

    def make(ds, is_train):
        paths = [p for p, _ in ds.samples]
        return ImageNetSet(paths, torch.tensor([t for _, t in ds.samples]), is_train)

    return Source(train=make(train, True), test=make(val, False), channels=3, size=SIZE,
                  num_classes=len(train.classes), mean=MEAN, std=STD, flip=True, origin=str(root),
                  in_memory=False)
