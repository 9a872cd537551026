"""Data sets and input pipelines.

``DATASETS`` is a plain dict from name to :class:`DatasetInfo`; :func:`load_data` turns a name
into a :class:`DataBundle` of train / val / test :class:`Batches` on the training device, with
the input size the model needs (docs/method.md §6). The validation split is carved from the
training data (docs/method.md §7); the test split is the data set's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, runtime_checkable

import torch

from ..dist.env import resolve_device
from ..errors import ConfigError
from .batches import DeviceBatches, Finisher, LoaderBatches
from .cifar10 import load_cifar10
from .digits import load_digits
from .fashion_mnist import load_fashion_mnist
from .imagefolder import load_imagefolder
from .imagenet import load_imagenet
from .sets import ArraySet, Source, materialise
from .sizes import default_size
from .spec import InputSpec
from .split import split_indices
from .synthetic import DEFAULT_SHAPE, check_shape, load_synthetic
from .tinyimagenet import load_tinyimagenet

__all__ = ["Batches", "DataBundle", "DatasetInfo", "DATASETS", "PIPELINES", "load_data", "load_data_for", "dataset_spec",
           "DEVICE_PIPELINE_LIMIT"]

PIPELINES = ("auto", "device", "workers")
DEVICE_PIPELINE_LIMIT = 4 * 1024**3  # bytes of stored images above which `auto` uses workers


@runtime_checkable
class Batches(Protocol):
    """One split as minibatches: ``epoch(seed)`` yields (x float32 NCHW, y int64), both on the device.

    Training batches are shuffled and augmented as a pure function of ``seed``; val/test ignore it.
    ``len()`` counts the last partial batch. Iterating it directly is ``epoch(0)``.
    """

    num_samples: int
    batch_size: int

    def epoch(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class DataBundle:
    train: Batches
    val: Batches
    test: Batches
    spec: InputSpec   # after resizing for the model
    name: str
    source: str       # where the data came from (a path, "sklearn", "synthetic ...")
    pipeline: str = "device"


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[..., Source]
    shape: tuple[int, int, int] | None  # native (channels, size, classes); None: depends on the files
    in_memory: bool                     # whether the device pipeline can hold it
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(load_fashion_mnist, (1, 28, 10), True,
                                 "Fashion-MNIST 60k/10k 1x28x28 (Debian package, --data-dir or download)"),
    "digits": DatasetInfo(load_digits, (1, 8, 10), True, "scikit-learn's 1,797 8x8 digits (no files needed)"),
    "synthetic": DatasetInfo(load_synthetic, (*DEFAULT_SHAPE[:2], 10), True,
                             "seeded Gaussian blobs, 1x8x8 by default (no files needed)"),
    "cifar10": DatasetInfo(load_cifar10, (3, 32, 10), True, "CIFAR-10 50k/10k 3x32x32 (--data-dir or download)"),
    "tinyimagenet": DatasetInfo(load_tinyimagenet, (3, 64, 200), True,
                                "tiny-imagenet-200 folder, 100k/10k 3x64x64, 200 classes (--data-dir)"),
    "imagefolder": DatasetInfo(load_imagefolder, None, True,
                               "<data-dir>/train/<class>/* and <data-dir>/test/<class>/* images"),
    "imagenet": DatasetInfo(load_imagenet, (3, 224, 1000), False,
                            "ILSVRC-2012 via torchvision.datasets.ImageNet (--data-dir), workers pipeline only"),
}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; valid data sets: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_spec(name: str, model: str, *, synthetic_shape: tuple[int, int, int] | None = None) -> InputSpec:
    """The InputSpec ``load_data(name, model=model)`` would give, without reading any file."""
    info = _info(name)
    if info.shape is None:
        raise ConfigError(f"the input shape of {name!r} depends on its image files; load it to know it")
    channels, size, classes = info.shape
    if name == "synthetic" and synthetic_shape is not None:
        channels, size, _ = check_shape(synthetic_shape)
    return InputSpec(channels, default_size(model, name, size), classes)


def _choose_pipeline(pipeline: str, name: str, info: DatasetInfo, src: Source | None) -> str:
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    fits = info.in_memory and (src is None or src.in_memory)
    if pipeline == "device" and not fits:
        raise ConfigError(f"{name} is too large for the device pipeline; use --pipeline workers (or auto)")
    if pipeline != "auto":
        return pipeline
    stored = src.train.nbytes + src.test.nbytes
    return "device" if fits and stored < DEVICE_PIPELINE_LIMIT else "workers"


def _check_sizes(batch_size: int, eval_batch_size: int | None, workers: int, val_frac: float) -> None:
    if not 0.0 <= val_frac < 1.0:  # NaN fails too
        raise ConfigError(f"val_frac must be in [0, 1), got {val_frac}; 0.1 holds out 10% of the training data")
    if int(batch_size) < 1 or (eval_batch_size is not None and int(eval_batch_size) < 1):
        raise ConfigError(f"batch sizes must be >= 1, got {batch_size} / {eval_batch_size}")
    if int(workers) < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")


def load_data(name: str, *, model: str, batch_size: int, seed: int, val_frac: float = 0.1,
              data_dir: str | None = None, device: str | torch.device = "cpu", pipeline: str = "auto",
              workers: int = 2, eval_batch_size: int | None = None,
              synthetic_shape: tuple[int, int, int] | None = None,
              synthetic_samples: int | None = None) -> DataBundle:
    """Load data set ``name`` for ``model``: train/val/test batches on ``device``.

    ``seed`` fixes the validation split (and the synthetic data); the batch order and flips of a
    training epoch are fixed by the seed passed to ``bundle.train.epoch(seed)``.
    """
    info = _info(name)
    _check_sizes(batch_size, eval_batch_size, workers, val_frac)
    default_size(model, name, 1)  # an unknown model fails here, before any data is read
    if pipeline not in PIPELINES or (pipeline == "device" and not info.in_memory):
        _choose_pipeline(pipeline, name, info, None)  # raises the ConfigError before loading
    src = info.load(data_dir=data_dir or None, seed=seed, workers=workers,
                    synthetic_shape=synthetic_shape, synthetic_samples=synthetic_samples)
    spec = InputSpec(src.channels, default_size(model, name, src.size), src.num_classes)
    train_idx, val_idx = split_indices(len(src.train), val_frac, seed)
    kind = _choose_pipeline(pipeline, name, info, src)
    finish = Finisher(src.mean, src.std, src.scale, src.size, spec.size, resolve_device(str(device)))
    sizes = int(batch_size), int(eval_batch_size or batch_size)
    parts = _make_batches(kind, src, finish, (train_idx, val_idx), sizes, workers)
    return DataBundle(*parts, spec=spec, name=name, source=src.origin, pipeline=kind)


def load_data_for(cfg, device: str | torch.device = "cpu") -> DataBundle:
    """:func:`load_data` with the data settings of a run's configuration (``config.Config``)."""
    return load_data(cfg.dataset, model=cfg.model, batch_size=cfg.batch_size, seed=cfg.seed, val_frac=cfg.val_frac,
                     data_dir=cfg.data_dir or None, device=device, pipeline=cfg.pipeline, workers=cfg.workers)


def _make_batches(kind: str, src: Source, finish: Finisher, split, sizes, workers: int):
    """(train, val, test) Batches of the chosen pipeline; only training batches shuffle and flip."""
    (train_idx, val_idx), (bs, ebs) = split, sizes
    if kind == "device":
        train_all = src.train if isinstance(src.train, ArraySet) else materialise(src.train, workers, "decoding train")
        test = src.test if isinstance(src.test, ArraySet) else materialise(src.test, workers, "decoding test")
        return (DeviceBatches(train_all.subset(train_idx), bs, finish, shuffle=True, flip=src.flip),
                DeviceBatches(train_all.subset(val_idx), ebs, finish),
                DeviceBatches(test, ebs, finish))
    return (LoaderBatches(src.train.subset(train_idx), bs, finish, shuffle=True, flip=src.flip, workers=workers),
            LoaderBatches(_eval_view(src.train).subset(val_idx), ebs, finish, workers=workers),
            LoaderBatches(src.test, ebs, finish, workers=workers))


def _eval_view(data):
    """The training set as seen by evaluation (no random crop); only ImageNet differs."""
    view = getattr(data, "eval_view", None)
    return view() if callable(view) else data
