"""The fully connected baseline ``mlp``: LeNet-300-100.

LeCun et al. (1998) list this 784-300-100-10 perceptron among their MNIST baselines, and the
pruning literature (e.g. Han et al. 2015, Frankle & Carbin 2019) uses it as the smallest
standard model. Here the input width is computed from the spec, so it also runs on the 8x8
``digits`` and ``synthetic`` sets where no convolution fits.
"""

from __future__ import annotations

from torch import nn

from ..data.spec import InputSpec

__all__ = ["MLP", "build_mlp"]


class MLP(nn.Module):
    """flatten -> Linear(in, 300) -> ReLU -> Linear(300, 100) -> ReLU -> Linear(100, classes)."""

    def __init__(self, spec: InputSpec, hidden: tuple[int, int] = (300, 100)) -> None:
        super().__init__()
        in_features = spec.channels * spec.size * spec.size
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], spec.num_classes)
        self.relu = nn.ReLU()
        # PyTorch's default Linear init is kept: nothing in the paper fixes it for this model.

    def forward(self, x):
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def build_mlp(spec: InputSpec) -> nn.Module:
    """Registry entry for ``mlp``."""
    return MLP(spec)
