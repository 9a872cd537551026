"""Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test, 1x28x28, 10 classes.

Lookup order: (1) ``data_dir`` in torchvision's layout (``<data_dir>/FashionMNIST/raw``) or with
the four IDX files directly in it; (2) Debian's ``dataset-fashion-mnist`` package folder;
(3) a torchvision download into ``data_dir`` (or ``~/.cache/causalprune/data``). Files may be
gzipped or not. Normalisation per docs/method.md §6: mean 0.2860, std 0.3530, no augmentation.

The IDX format (LeCun's MNIST format) is parsed here with numpy, with every size checked, so
a truncated or foreign file gives a one-line DataError instead of a numpy traceback.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .sets import ArraySet, Source, one_line

__all__ = ["load_fashion_mnist", "read_idx", "find_idx_files", "IDX_FILES", "DEBIAN_DIR", "MEAN", "STD"]

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path("~/.cache/causalprune/data")
MEAN, STD = (0.2860,), (0.3530,)
HOW_TO_GET = ("install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir with torchvision's "
              "FashionMNIST layout (<dir>/FashionMNIST/raw/*-idx?-ubyte[.gz]), or allow network access for "
              "the torchvision download")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{path} is truncated or not a valid gzip file ({exc}); delete it and fetch it again") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, as a uint8 array."""
    path = Path(path)
    raw = _read_bytes(path)
    header = 4 + 4 * ndim
    # Magic number: two zero bytes, type code 0x08 (unsigned byte), number of dimensions.
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad magic number); "
                        "delete it and fetch it again")
    if len(raw) < header:
        raise DataError(f"{path} is truncated (incomplete header); delete it and fetch it again")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = math.prod(dims)
    if len(raw) - header != expected:
        what = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise DataError(f"{path} is {what} ({len(raw) - header} data bytes, expected {expected}); "
                        "delete it and fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_files(folder: str | Path) -> dict[str, Path] | None:
    """The four files in ``folder`` or ``folder/FashionMNIST/raw`` (plain or .gz), or None."""
    folder = Path(folder).expanduser()
    for base in (folder / "FashionMNIST" / "raw", folder):
        found = {}
        for key, name in IDX_FILES.items():
            for candidate in (base / name, base / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def _download(root: Path) -> None:
    import torchvision

    for train in (True, False):
        torchvision.datasets.FashionMNIST(str(root), train=train, download=True)


def _locate(data_dir: str | None) -> dict[str, Path]:
    if data_dir:
        found = find_idx_files(data_dir)
        if found:
            return found
    found = find_idx_files(DEBIAN_DIR)
    if found:
        return found
    root = Path(data_dir).expanduser() if data_dir else CACHE_DIR.expanduser()
    try:
        _download(root)
    except Exception as exc:  # no network, a partial archive, a full disk: all end the same way
        reason = one_line(exc)
        raise DataError(f"Fashion-MNIST not found and the download into {root} failed ({reason}); "
                        f"delete a partial {root / 'FashionMNIST'} if any, and {HOW_TO_GET}") from None
    found = find_idx_files(root)
    if not found:
        raise DataError(f"Fashion-MNIST download into {root} left no IDX files; {HOW_TO_GET}")
    return found


def _split(files: dict[str, Path], part: str) -> ArraySet:
    images = read_idx(files[f"{part}_images"], 3)
    labels = read_idx(files[f"{part}_labels"], 1)
    if len(images) != len(labels):
        raise DataError(f"{files[part + '_images']} has {len(images)} images but "
                        f"{files[part + '_labels']} has {len(labels)} labels; the files do not belong together")
    if labels.size and labels.max() >= 10:
        raise DataError(f"{files[part + '_labels']} has labels >= 10; it is not a Fashion-MNIST label file")
    return ArraySet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def load_fashion_mnist(*, data_dir: str | None = None, **_) -> Source:
    """Fashion-MNIST as a :class:`Source` of uint8 (N, 1, 28, 28) tensors."""
    files = _locate(data_dir)
    train, test = _split(files, "train"), _split(files, "test")
    if train.images.shape[-1] != train.images.shape[-2] or train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"Fashion-MNIST images in {files['train_images'].parent} are not square or train and "
                        "test shapes differ; the files are not Fashion-MNIST")
    return Source(train=train, test=test, channels=1, size=int(train.images.shape[-1]), num_classes=10,
                  mean=MEAN, std=STD, flip=False, origin=str(files["train_images"].parent))
