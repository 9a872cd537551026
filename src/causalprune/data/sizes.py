"""The input side each model is trained at (docs/method.md §6).

The data pipeline resizes images for the model it feeds, so it needs this one fact about each
model, by name; it imports no model code. ``None`` keeps the data set's native size.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["MODEL_INPUT_SIZE", "default_size"]

# Fashion-MNIST and TinyImageNet go to 32 px for ResNet-18 / AlexNet-32 and to 224 for AlexNet;
# LeNet sees 28 (FMNIST), 32 (CIFAR-10) and 64 (TinyImageNet, with k=7).
MODEL_INPUT_SIZE: dict[str, int | None] = {
    "mlp": None,
    "lenet": None,
    "alexnet": 224,
    "alexnet32": 32,
    "resnet18": 32,
    "resnet18-nobn": 32,
    "resnet50": 224,
}


def default_size(model_name: str, dataset_name: str, native_size: int) -> int:
    """Square input side that ``model_name`` is trained at on ``dataset_name`` (native ``native_size``).

    The rule depends on the model only; ``dataset_name`` is accepted so that a data-set-specific
    exception can be added without changing callers.
    """
    if model_name not in MODEL_INPUT_SIZE:
        raise ConfigError(f"unknown model {model_name!r}; valid models: {', '.join(MODEL_INPUT_SIZE)}")
    fixed = MODEL_INPUT_SIZE[model_name]
    return native_size if fixed is None else fixed
