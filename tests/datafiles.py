"""Small data-set folders in the real on-disk formats, written by the tests themselves.

Fashion-MNIST as IDX files, TinyImageNet as the ``tiny-imagenet-200`` folder, image folders, and a
stand-in for torchvision's CIFAR10 class (whose loader checks the md5 of the real archive, so a
small folder in its format cannot be read by it).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from causalprune.data import fashion_mnist as fm

__all__ = ["FakeCifar", "idx_bytes", "write_fmnist", "write_image", "write_imagefolder", "write_tiny_imagenet"]


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_fmnist(folder: Path, n_train=40, n_test=12, gz=True, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in fm.IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def write_image(path: Path, size=12, mode="RGB", seed=0) -> None:
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def write_imagefolder(root: Path, classes=("cat", "dog", "owl"), per_class=7, size=12) -> Path:
    k = 0
    for split, n in (("train", per_class), ("test", 2)):
        for c in classes:
            for i in range(n):
                write_image(root / split / c / f"{i}.png", size=size, seed=k)
                k += 1
    return root


def write_tiny_imagenet(root: Path, wnids=("n02", "n01", "n03"), per_class=4, n_val=6) -> Path:
    base = root / "tiny-imagenet-200"
    (base / "wnids.txt").parent.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    k = 0
    for w in wnids:
        for i in range(per_class):
            write_image(base / "train" / w / "images" / f"{w}_{i}.JPEG", size=64,
                        mode="L" if i == 0 else "RGB", seed=k)
            k += 1
    lines = []
    for i in range(n_val):
        write_image(base / "val" / "images" / f"val_{i}.JPEG", size=64, seed=100 + i)
        lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


class FakeCifar:
    """torchvision.datasets.CIFAR10's interface: ``data`` (N, 32, 32, 3) uint8 and ``targets``."""

    samples = {True: 30, False: 10}

    def __init__(self, root, train, download):
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, (self.samples[bool(train)], 32, 32, 3), dtype=np.uint8)
        self.targets = list(np.arange(len(self.data)) % 10)
