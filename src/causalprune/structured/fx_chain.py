"""Prove that a model is a plain chain of layers, or say why not (for structure.py and shrink.py).

A *plain chain* is a forward pass, traced with ``torch.fx``, that is one path from the input to
the output: no node is used twice (no residual add, no concatenation), every prunable layer is
called once, and between two prunable layers there are only per-channel operations (element-wise
activations, pooling, dropout, BatchNorm) and at most one flatten with ``start_dim=1``. Then output
channel c of one prunable layer is exactly input channel c of the next one (input columns
``c*k .. c*k+k-1`` after a flatten of ``k`` positions per channel), which is what makes deleting a
channel well defined. Shapes come from running the traced graph once (``ShapeProp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..data.spec import InputSpec
from ..errors import ConfigError
from ..models import PRUNABLE_TYPES

__all__ = ["Interface", "Chain", "trace_chain"]

_PER_CHANNEL_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PER_CHANNEL_FUNCTIONS = {
    torch.relu, F.relu, torch.tanh, torch.sigmoid, F.gelu, F.silu, F.leaky_relu, F.dropout,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
}
_PER_CHANNEL_METHODS = {"relu", "tanh", "sigmoid", "contiguous"}


@dataclass
class Interface:
    """The channels between two consecutive prunable layers of a chain."""

    producer: str            # module fqn whose output channels these are
    consumer: str            # module fqn that reads them
    channels: int            # producer's output channels
    per_channel: int = 1     # consumer input features per channel (positions, after a flatten)
    norms: list[str] = field(default_factory=list)  # BatchNorm modules on these channels
    foldable: bool = True    # a constant channel can move into the consumer's bias (no zero padding)


@dataclass
class Chain:
    layers: list[str]              # prunable modules in forward order
    interfaces: list[Interface]    # len(layers) - 1


def _refuse(why: str) -> ConfigError:
    return ConfigError(f"not a plain chain of layers: {why}; only LeNet, mlp and Sequential-like "
                       "Conv/Linear chains can be shrunk (residual models such as resnet* cannot)")


def _is_flatten(node: fx.Node, mod: nn.Module | None) -> bool | None:
    """True for a flatten from dim 1 to the end, False for another op, None for a bad flatten."""
    if isinstance(mod, nn.Flatten):
        return True if (mod.start_dim, mod.end_dim) == (1, -1) else None
    if (node.op == "call_function" and node.target is torch.flatten) or \
            (node.op == "call_method" and node.target == "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return True if (start, end) == (1, -1) else None
    return False


def _check_op(node: fx.Node, mod: nn.Module | None) -> None:
    if node.op == "call_module":
        if not isinstance(mod, _PER_CHANNEL_MODULES + _NORMS + (nn.Flatten,)):
            raise _refuse(f"it contains {type(mod).__name__} ({node.target}), which shrink does not handle")
    elif node.op == "call_function" and node.target not in _PER_CHANNEL_FUNCTIONS and node.target is not torch.flatten:
        raise _refuse(f"it calls {getattr(node.target, '__name__', node.target)} ({node.name})")
    elif node.op == "call_method" and node.target not in _PER_CHANNEL_METHODS | {"flatten"}:
        raise _refuse(f"it calls .{node.target}() ({node.name}); use nn.Flatten instead of view/reshape")
    elif node.op == "get_attr":
        raise _refuse(f"it reads the tensor attribute {node.target}")


def _walk(gm: fx.GraphModule, mods: dict[str, nn.Module]) -> tuple[list[str], list[list[fx.Node]], list[fx.Node]]:
    """(prunable layers, the nodes after each one, the layer nodes), checking the graph is one path."""
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise _refuse(f"forward() takes {len(inputs)} inputs")
    prev, layers, layer_nodes, segments = inputs[0], [], [], [[]]
    for node in nodes[nodes.index(prev) + 1:]:
        if node.all_input_nodes != [prev] or len(prev.users) != 1:
            raise _refuse(f"the graph branches or merges at {node.name} (e.g. a residual connection)")
        if node.op == "output":
            return layers, segments, layer_nodes
        mod = mods.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, PRUNABLE_TYPES):
            if node.target in layers:
                raise _refuse(f"layer {node.target} is called more than once")
            if isinstance(mod, nn.modules.conv._ConvNd) and (mod.groups != 1 or mod.transposed):
                raise _refuse(f"{node.target} is a grouped or transposed convolution")
            layers.append(node.target)
            layer_nodes.append(node)
            segments.append([])
        else:
            _check_op(node, mod)
            segments[-1].append(node)
        prev = node
    raise _refuse("the traced graph has no output")


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise _refuse(f"{node.name} does not produce a single tensor")
    return tuple(meta.shape)


def _interface(producer: fx.Node, ops: list[fx.Node], consumer: fx.Node, mods: dict[str, nn.Module]) -> Interface:
    """Follow the channels of ``producer`` through ``ops`` into ``consumer``."""
    shape = _shape(producer)
    c, per, flat, norms = shape[1], 1, len(shape) == 2, []
    for node in ops:
        mod = mods.get(node.target) if node.op == "call_module" else None
        out = _shape(node)
        if _is_flatten(node, mod):
            if flat:
                raise _refuse(f"{node.name} flattens twice between {producer.target} and {consumer.target}")
            flat, per = True, math.prod(_shape(node.all_input_nodes[0])[2:])
        elif _is_flatten(node, mod) is None:
            raise _refuse(f"{node.name} flattens from a dimension other than 1")
        if isinstance(mod, _NORMS):
            norms.append(node.target)
        if len(out) < 2 or (out[1] if not flat else out[1] // per) != c:
            raise _refuse(f"{node.name} changes the number of channels")
    cons = mods[consumer.target]
    if isinstance(cons, nn.Linear) and (not flat or cons.in_features != c * per):
        raise _refuse(f"{consumer.target} does not read the {c} channels of {producer.target} through a flatten")
    if not isinstance(cons, nn.Linear) and (flat or cons.in_channels != c):
        raise _refuse(f"{consumer.target} does not read the {c} channels of {producer.target}")
    pad = getattr(cons, "padding", 0)
    padded = pad == "same" or (not isinstance(pad, str) and any(p != 0 for p in (pad if isinstance(pad, tuple) else (pad,))))
    foldable = not (padded and getattr(cons, "padding_mode", "zeros") == "zeros")
    return Interface(producer.target, consumer.target, c, per, norms, foldable)


def trace_chain(model: nn.Module, spec: InputSpec, device: torch.device | str = "cpu") -> Chain:
    """The prunable layers of ``model`` in order, with the interfaces between them; raises a
    one-line ConfigError saying why when ``model`` is not a plain chain."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...): all mean "cannot prove"
        raise _refuse(f"torch.fx cannot trace it ({type(exc).__name__})") from None
    mods = dict(model.named_modules())
    layers, segments, layer_nodes = _walk(gm, mods)
    if len(layers) != len([m for m in mods.values() if isinstance(m, PRUNABLE_TYPES)]):
        raise _refuse("some Conv/Linear layers are not on the forward path")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(2, spec.channels, spec.size, spec.size, device=device))
    except Exception as exc:  # noqa: BLE001 - whatever fails, the chain cannot be proven
        raise _refuse(f"its traced graph does not run on a {spec} input ({type(exc).__name__})") from None
    finally:
        model.train(was)
    itfs = [_interface(layer_nodes[i], segments[i + 1], layer_nodes[i + 1], mods) for i in range(len(layers) - 1)]
    return Chain(layers, itfs)
