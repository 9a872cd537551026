"""scikit-learn's bundled copy of the UCI handwritten digits: 1,797 images, 1x8x8, 10 classes.

No network and no files needed, so this is the data set for quick tests and CPU examples.
Pixel values are integers 0..16; they are kept as uint8 and scaled by 1/16 in the pipeline,
then standardised with the mean/std of the training part.

There is no official test split, so a fixed 20% holdout (359 images, drawn with a permutation
seeded by ``TEST_SEED`` = 0, independent of the run seed) is the test set. The validation split
is then taken from the remaining 1,438 images with the run seed, like every other data set.
"""

from __future__ import annotations

import torch

from .sets import ArraySet, Source, channel_stats
from .split import holdout_indices

__all__ = ["load_digits", "TEST_FRAC", "TEST_SEED"]

TEST_FRAC = 0.2
TEST_SEED = 0


def load_digits(**_) -> Source:
    """The digits data set as a :class:`Source` (ignores data_dir: it ships with scikit-learn)."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    images = torch.from_numpy(d.images).to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    labels = torch.from_numpy(d.target).to(torch.int64)
    keep, test = holdout_indices(len(labels), TEST_FRAC, TEST_SEED)
    train = ArraySet(images.index_select(0, keep), labels.index_select(0, keep))
    mean, std = channel_stats(train.images, 1.0 / 16.0)
    return Source(
        train=train,
        test=ArraySet(images.index_select(0, test), labels.index_select(0, test)),
        channels=1, size=8, num_classes=10, mean=mean, std=std, scale=1.0 / 16.0, flip=False,
        origin="sklearn (sklearn.datasets.load_digits, bundled; test = fixed 20% holdout)",
    )
