"""Containers shared by every data source.

A source returns a :class:`Source`: a training and a test :class:`ImageSet` plus what the input
pipeline needs to finish a batch (mean, std, scale, whether to flip). Images are stored as
integers (uint8 for photos, 0..16 for digits) or float32 (synthetic), NCHW, at a fixed storage
size; the pipelines convert, flip, resize and normalise on the training device (batches.py).

Two kinds of sets exist: :class:`ArraySet` (already in memory) and :class:`FileSet` (image files
decoded on demand, for the DataLoader pipeline, or all at once by :func:`materialise`).
Items are addressed by ``int`` or by ``(int, seed)``; the seed only matters for sets with
random crops (ImageNet), so that a crop is a function of the epoch seed in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import DataError

__all__ = ["Source", "ArraySet", "FileSet", "materialise", "channel_stats", "clean_worker_error", "one_line",
           "split_key", "to_chw"]


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message squeezed onto one line (for wrapping it in a DataError)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def split_key(key) -> tuple[int, int]:
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), 0


class ArraySet(Dataset):
    """Images (N, C, H, W) and int64 labels, both CPU tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels; the data files do not match")
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        i, _ = split_key(key)
        return self.images[i], self.labels[i]

    def subset(self, idx: torch.Tensor) -> "ArraySet":
        return ArraySet(self.images.index_select(0, idx), self.labels.index_select(0, idx))

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()


class FileSet(Dataset):
    """Image files decoded with PIL to ``channels`` x ``size`` x ``size`` uint8 tensors."""

    def __init__(self, paths: Sequence[str], labels: torch.Tensor, channels: int, size: int) -> None:
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, i: int):
        """The i-th image as a PIL image in the set's colour mode (DataError if unreadable)."""
        from PIL import Image

        path = self.paths[i]
        try:
            with Image.open(path) as img:
                return img.convert("L" if self.channels == 1 else "RGB")
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for bad files
            raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc}); delete or replace it") from None

    def __getitem__(self, key):
        i, _ = split_key(key)
        img = self.open(i)
        if img.size != (self.size, self.size):
            from PIL import Image

            img = img.resize((self.size, self.size), Image.BILINEAR)
        return to_chw(img), self.labels[i]

    def subset(self, idx: torch.Tensor) -> "FileSet":
        out = self.__class__.__new__(self.__class__)
        out.__dict__.update(self.__dict__)
        out.paths = [self.paths[int(i)] for i in idx]
        out.labels = self.labels.index_select(0, idx)
        return out

    @property
    def nbytes(self) -> int:
        return len(self) * self.channels * self.size * self.size


def to_chw(img) -> torch.Tensor:
    """PIL image -> uint8 tensor (C, H, W)."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass
class Source:
    """What a data-set module returns: the raw splits and how to finish a batch."""

    train: Dataset
    test: Dataset
    channels: int
    size: int            # storage side; the pipeline resizes to the model's size
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0 / 255.0   # stored value * scale is in [0, 1] before normalisation
    flip: bool = False            # random horizontal flip on training batches
    origin: str = ""
    in_memory: bool = True        # False: the device pipeline is refused (ImageNet)


def clean_worker_error(exc: DataError) -> DataError:
    """A DataError re-raised by a DataLoader worker carries the worker's traceback in its
    message; keep only the original one-line message."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= 1:
        return exc
    last = lines[-1]
    for prefix in ("causalprune.errors.DataError: ", "DataError: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
    return DataError(last)


def materialise(data: Dataset, workers: int = 0, desc: str = "decoding images") -> ArraySet:
    """Decode a whole set into one ArraySet (for the device pipeline), ``workers`` in parallel."""
    n = len(data)
    loader = DataLoader(data, batch_size=256, shuffle=False, num_workers=workers)
    images, labels = None, torch.empty(n, dtype=torch.int64)
    pos = 0
    try:
        for x, y in tqdm(loader, desc=desc, disable=None, leave=False):
            if images is None:
                images = torch.empty((n, *x.shape[1:]), dtype=x.dtype)
            images[pos:pos + len(x)] = x
            labels[pos:pos + len(x)] = y
            pos += len(x)
    except DataError as exc:
        raise clean_worker_error(exc) from None
    if images is None:
        raise DataError("the data set holds no images; check the folder passed with --data-dir")
    return ArraySet(images, labels)


def channel_stats(images: torch.Tensor, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images * scale`` (N, C, H, W), in float64."""
    x = images.to(torch.float64) * scale
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)  # a constant channel must not divide by 0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
