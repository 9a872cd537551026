"""Synthetic Gaussian blobs: a learnable stand-in for an image data set, made from the seed.

Each class has a centre image drawn from N(0, 1) per pixel; a sample is its class centre plus
N(0, NOISE^2) noise per pixel (the "blobs" of sklearn's ``make_blobs``, shaped as an image).
With NOISE = 1.5 the classes overlap a little on small shapes, so accuracy rises visibly over a
few epochs instead of being perfect after one step. Everything comes from one generator
seeded with the run seed: the same seed gives the same data set.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .sets import ArraySet, Source, channel_stats

__all__ = ["load_synthetic", "DEFAULT_SHAPE", "DEFAULT_SAMPLES", "TEST_SAMPLES", "NUM_CLASSES"]

DEFAULT_SHAPE = (1, 8, 8)
DEFAULT_SAMPLES = 1200
TEST_SAMPLES = 300
NUM_CLASSES = 10
NOISE = 1.5


def check_shape(shape) -> tuple[int, int, int]:
    """Validate a (channels, height, width) triple; images must be square."""
    try:
        c, h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic_shape must be three integers (C, H, W), got {shape!r}") from None
    if c < 1 or h < 1 or h != w:
        raise ConfigError(f"synthetic_shape must be (C, S, S) with C, S >= 1 (square images), got {shape!r}")
    return c, h, w


def load_synthetic(*, seed: int = 0, synthetic_shape=None, synthetic_samples=None, **_) -> Source:
    """``synthetic_samples`` (default 1,200) training and 300 test samples of ``synthetic_shape``."""
    c, h, w = check_shape(synthetic_shape or DEFAULT_SHAPE)
    n_train = DEFAULT_SAMPLES if synthetic_samples is None else int(synthetic_samples)
    if n_train < 2:
        raise ConfigError(f"synthetic_samples must be >= 2, got {n_train}")
    g = torch.Generator().manual_seed(int(seed))
    centres = torch.randn(NUM_CLASSES, c, h, w, generator=g)

    def draw(n: int) -> ArraySet:
        y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        x = centres[y] + NOISE * torch.randn(n, c, h, w, generator=g)
        return ArraySet(x.contiguous(), y)

    train, test = draw(n_train), draw(TEST_SAMPLES)
    mean, std = channel_stats(train.images, 1.0)
    return Source(train=train, test=test, channels=c, size=h, num_classes=NUM_CLASSES,
                  mean=mean, std=std, scale=1.0, flip=False, origin=f"synthetic (seed {seed})")
