"""Model registry: exact parameter counts (method-facts §5), shapes, errors, deepcopy, pruning."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from causalprune.data.sizes import default_size
from causalprune.data.spec import InputSpec
from causalprune.errors import ConfigError
from causalprune.models import MODELS, build_model, count_parameters, prunable_layers

FMNIST, CIFAR, TINY, DIGITS = InputSpec(1, 28, 10), InputSpec(3, 32, 10), InputSpec(3, 64, 200), InputSpec(1, 8, 10)


@pytest.mark.parametrize("name,spec,total", [
    ("lenet", CIFAR, 657_080),
    ("lenet", FMNIST, 431_080),
    ("lenet", TINY, 3_177_710),
    ("alexnet", InputSpec(3, 224, 10), 57_044_810),
    ("alexnet32", CIFAR, 23_210_826),
    ("resnet18", CIFAR, 11_173_962),
    ("resnet18-nobn", CIFAR, 11_169_162),
    ("mlp", FMNIST, 266_610),        # LeNet-300-100: 784*300+300 + 300*100+100 + 100*10+10
    ("resnet50", InputSpec(3, 224, 1000), 25_557_032),  # torchvision's published count
])
def test_parameter_counts(name, spec, total):
    assert count_parameters(build_model(name, spec))[0] == total


def test_lenet_cifar_prunable_count_and_layers():
    model = build_model("lenet", CIFAR)
    assert count_parameters(model) == (657_080, 656_500)
    assert list(prunable_layers(model)) == ["conv1", "conv2", "fc1", "fc2"]
    # k=5 on 32 px, k=7 only at 64 px (TinyImageNet)
    assert model.conv1.kernel_size == (5, 5)
    assert build_model("lenet", TINY).conv1.kernel_size == (7, 7)


def test_prunable_weights_exclude_bias_and_batchnorm():
    bn = build_model("resnet18", CIFAR)
    nobn = build_model("resnet18-nobn", CIFAR)
    # same conv/fc weight tensors; only biases / BN parameters differ
    assert count_parameters(bn)[1] == count_parameters(nobn)[1] == 11_164_352
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    assert all(m.bias is not None for m in prunable_layers(nobn).values())
    assert all(m.bias is None for n, m in prunable_layers(bn).items() if isinstance(m, nn.Conv2d))


def test_lenet_init_is_kaiming_fan_out_with_zero_bias():
    torch.manual_seed(0)
    model = build_model("lenet", CIFAR)
    for m in prunable_layers(model).values():
        assert torch.count_nonzero(m.bias) == 0
    # fan_out of fc1 is 500 -> std sqrt(2/500) = 0.0632; fan_in would give sqrt(2/1250) = 0.04
    assert abs(model.fc1.weight.std().item() - (2 / 500) ** 0.5) < 0.002


@pytest.mark.parametrize("name,spec", [
    ("mlp", FMNIST), ("mlp", DIGITS), ("mlp", CIFAR),
    ("lenet", FMNIST), ("lenet", CIFAR), ("lenet", TINY),
    ("alexnet32", CIFAR), ("alexnet32", InputSpec(1, 32, 10)),
    ("resnet18", CIFAR), ("resnet18", InputSpec(1, 32, 10)), ("resnet18-nobn", InputSpec(3, 32, 200)),
])
def test_forward_shapes(name, spec):
    model = build_model(name, spec)
    out = model(torch.randn(2, spec.channels, spec.size, spec.size))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name,spec", [("alexnet", InputSpec(3, 224, 10)), ("alexnet", InputSpec(1, 224, 10)),
                                       ("resnet50", InputSpec(3, 224, 1000)), ("resnet50", InputSpec(1, 224, 10))])
def test_forward_shapes_large(name, spec):
    model = build_model(name, spec).eval()
    with torch.no_grad():
        out = model(torch.randn(1, spec.channels, spec.size, spec.size))
    assert out.shape == (1, spec.num_classes)


def test_lenet_on_tiny_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"at least 16x16.*mlp"):
        build_model("lenet", DIGITS)
    build_model("lenet", InputSpec(1, 16, 10))  # the true bound fits
    with pytest.raises(ConfigError):
        build_model("lenet", InputSpec(1, 15, 10))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        build_model("vgg", CIFAR)
    assert all(name in str(err.value) for name in MODELS)
    with pytest.raises(ConfigError):
        default_size("vgg", "cifar10", 32)


@pytest.mark.parametrize("model,dataset,native,expected", [
    ("lenet", "fashion-mnist", 28, 28), ("lenet", "cifar10", 32, 32), ("lenet", "tinyimagenet", 64, 64),
    ("resnet18", "fashion-mnist", 28, 32), ("resnet18", "tinyimagenet", 64, 32),
    ("resnet18-nobn", "fashion-mnist", 28, 32), ("alexnet32", "fashion-mnist", 28, 32),
    ("alexnet", "fashion-mnist", 28, 224), ("alexnet", "tinyimagenet", 64, 224), ("mlp", "digits", 8, 8),
])
def test_default_size_rules(model, dataset, native, expected):
    assert default_size(model, dataset, native) == expected


def test_alexnet32_dropout_off_in_eval():
    torch.manual_seed(0)
    model = build_model("alexnet32", CIFAR)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # dropout is active in training


@pytest.mark.parametrize("name,spec", [("mlp", FMNIST), ("lenet", CIFAR), ("resnet18", CIFAR)])
def test_deepcopy_and_masks(name, spec):
    torch.manual_seed(0)
    model = build_model(name, spec).eval()
    x = torch.randn(2, spec.channels, spec.size, spec.size)
    plain = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    total, prunable = count_parameters(model)
    for m in prunable_layers(model).values():
        prune.random_unstructured(m, "weight", amount=0.5)
    assert count_parameters(model) == (total, prunable)  # weight_orig replaces weight one for one
    # torch.nn.utils.prune leaves `weight` as a non-leaf tensor, which deepcopy refuses; a forward
    # pass under no_grad recomputes it as a plain tensor (a limitation of prune, not of the models).
    with torch.no_grad():
        ref = model(x)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(ref, clone(x))
    for m in prunable_layers(clone).values():
        assert prune.is_pruned(clone) and 0.45 <= (m.weight == 0).float().mean().item() <= 0.55


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = build_model("lenet", FMNIST)
    torch.manual_seed(3)
    b = build_model("lenet", FMNIST)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
