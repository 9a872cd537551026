"""Shapes shared by data sets and models."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputSpec"]


@dataclass(frozen=True)
class InputSpec:
    """What a model needs to know about its input: channels, square image size, classes."""

    channels: int
    size: int
    num_classes: int

    def __str__(self) -> str:
        return f"{self.channels}x{self.size}x{self.size}->{self.num_classes}"
