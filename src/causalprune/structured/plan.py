"""What a mask removes *structurally*: pruned channels, and the parameters and MACs that a
physically smaller dense model saves (structured pruning by weight sharing, paper §3 and §5 (i)).

A zero weight saves nothing in a dense kernel; a whole channel does. In a plain chain of layers
(Conv/Linear with element-wise activations, pooling, dropout, BatchNorm and one flatten between
them; :mod:`causalprune.chain`), the channel c between layer i (its *producer*) and layer i+1 (its
*consumer*) can be deleted, with the same outputs, when

* the consumer reads nothing from it (every weight of input channel c of layer i+1 is pruned): delete
  filter c of layer i, its bias and BatchNorm entries, and that input slice; or
* the producer's filter c is pruned: the channel then carries a *constant* (relu(bias), after the
  per-channel ops). A constant input adds ``v_c * sum(W[:, c])`` to every output of the consumer,
  which moves into the consumer's bias -- exactly, unless the consumer pads with zeros (then the
  border positions see fewer copies of v_c), in which case the channel is kept unless v_c == 0.

The first layer's inputs (image channels) and the last layer's outputs (classes) are never removed.
For models that are not such a chain (residual networks), the report is layer-local: whole pruned
filters and input channels of each layer, without the cross-layer consequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.spec import InputSpec
from ..errors import ConfigError
from ..masks import Masks
from .flops import layer_macs
from .fx_chain import Chain, trace_chain

__all__ = ["Plan", "plan_structure", "dead_filters", "dead_inputs", "structure_report"]


@dataclass
class Plan:
    """Channels to delete at each interface of a chain, and the constants to fold into biases."""

    chain: Chain
    removed: list[list[int]] = field(default_factory=list)          # per interface, sorted
    constants: list[dict[int, float]] = field(default_factory=list)  # per interface: c -> v_c to fold
    kept_constant: list[list[int]] = field(default_factory=list)     # dead filters that cannot be folded

    def keep_out(self, i: int, n_out: int) -> list[int]:
        """Output channels of layer ``i`` that remain (all for the last layer)."""
        if i >= len(self.removed):
            return list(range(n_out))
        gone = set(self.removed[i])
        return [c for c in range(n_out) if c not in gone]


def dead_filters(mask: torch.Tensor) -> torch.Tensor:
    """bool (out,): output filters (rows) whose every weight is pruned."""
    return ~mask.reshape(mask.shape[0], -1).bool().any(1)


def dead_inputs(mask: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """bool (channels,): input channels of which every weight is pruned. For a Linear layer after a
    flatten, ``channels`` groups its columns by the producer's channel (channel-major order)."""
    m = mask.bool()
    if m.dim() == 2 and channels is not None:
        return ~m.reshape(m.shape[0], channels, -1).any(2).any(0)
    return ~m.transpose(0, 1).reshape(m.shape[1], -1).any(1)


@torch.no_grad()
def _consumer_inputs(model: nn.Module, chain: Chain, spec: InputSpec, device) -> dict[str, torch.Tensor]:
    """Inputs of every consumer for two probe images (zeros and noise), in eval mode."""
    mods = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [mods[n].register_forward_pre_hook(lambda m, a, n=n: seen.__setitem__(n, a[0].detach()))
             for n in chain.layers[1:]]
    x = torch.zeros(2, spec.channels, spec.size, spec.size, device=device)
    x[1].normal_(generator=torch.Generator(device=device).manual_seed(0))
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return seen


def plan_structure(model: nn.Module, masks: Masks, spec: InputSpec, device: torch.device | str = "cpu",
                   chain: Chain | None = None) -> Plan:
    """The channels a plain chain can lose given ``masks`` (raises ConfigError if not a chain)."""
    chain = chain or trace_chain(model, spec, device)
    inputs = _consumer_inputs(model, chain, spec, device)
    plan = Plan(chain)
    for itf in chain.interfaces:
        out_dead = dead_filters(masks[f"{itf.producer}.weight"]).cpu()
        cons_mask = masks[f"{itf.consumer}.weight"]
        in_dead = dead_inputs(cons_mask, itf.channels if cons_mask.dim() == 2 else None).cpu()
        x = inputs[itf.consumer].reshape(2, itf.channels, -1).cpu()
        removed, consts, kept = [], {}, []
        for c in range(itf.channels):
            if bool(in_dead[c]):
                removed.append(c)
            elif bool(out_dead[c]):
                vals = x[:, c]
                v = float(vals.reshape(-1)[0])
                if bool((vals == vals.reshape(-1)[0]).all()) and (itf.foldable or v == 0.0):
                    removed.append(c)
                    consts[c] = v
                else:
                    kept.append(c)
        plan.removed.append(removed)
        plan.constants.append(consts)
        plan.kept_constant.append(kept)
    return plan


def _io(module: nn.Module) -> tuple[int, int]:
    w = module.weight_orig if hasattr(module, "weight_orig") else module.weight
    return int(w.shape[0]), int(w.shape[1])


def _layer_row(module, macs: int, removed_out: int, removed_in: int, per: int) -> dict[str, Any]:
    """Parameters and MACs of one layer before and after deleting the given channels."""
    o, i = _io(module)
    k = (module.weight_orig if hasattr(module, "weight_orig") else module.weight).numel() // (o * i)
    o2, i2 = o - removed_out, i - removed_in * per
    bias = module.bias is not None
    return {"out": o, "in": i, "out_after": o2, "in_after": i2,
            "params": o * i * k + (o if bias else 0), "params_after": o2 * i2 * k + (o2 if bias else 0),
            "macs": macs, "macs_after": macs // (o * i) * o2 * i2}


def _totals(model: nn.Module, rows: dict[str, dict], extra_removed: int, macs_all: int) -> dict[str, Any]:
    before = sum(p.numel() for p in model.parameters())
    removed = sum(r["params"] - r["params_after"] for r in rows.values()) + extra_removed
    macs_removed = sum(r["macs"] - r["macs_after"] for r in rows.values())
    return {"params_before": before, "params_after": before - removed, "params_removed": removed,
            "percent_params_removed": 100.0 * removed / max(before, 1),
            "macs_before": macs_all, "macs_after": macs_all - macs_removed, "macs_removed": macs_removed,
            "percent_macs_removed": 100.0 * macs_removed / max(macs_all, 1)}


def _chain_report(model, masks, spec, device, chain: Chain) -> dict[str, Any]:
    plan = plan_structure(model, masks, spec, device, chain)
    mods, macs = dict(model.named_modules()), layer_macs(model, spec, device)
    rows, layers, bn_removed = {}, {}, 0
    for li, name in enumerate(chain.layers):
        r_out = len(plan.removed[li]) if li < len(plan.removed) else 0
        r_in = len(plan.removed[li - 1]) if li > 0 else 0
        per = chain.interfaces[li - 1].per_channel if li > 0 else 1
        rows[name] = _layer_row(mods[name], macs[name], r_out, r_in, per)
        layers[name] = {**_local(masks[f"{name}.weight"], chain.interfaces[li - 1].channels if li and per > 1 else None),
                        "removed_filters": plan.removed[li] if li < len(plan.removed) else [],
                        **{k: rows[name][k] for k in ("out", "in", "out_after", "in_after")}}
    for itf, gone in zip(chain.interfaces, plan.removed):
        bn_removed += sum(2 * len(gone) for n in itf.norms if mods[n].affine)
    interfaces = [{"producer": t.producer, "consumer": t.consumer, "channels": t.channels,
                   "removed": r, "dead_filters_kept": k, "folded_into_bias": len(c)}
                  for t, r, k, c in zip(chain.interfaces, plan.removed, plan.kept_constant, plan.constants)]
    totals = _totals(model, rows, bn_removed, sum(macs.values()))
    return {"chain": True, "reason": None, "scope": "chain", "layers": layers, "interfaces": interfaces,
            "totals": {"chain": True, "scope": "chain", **totals}}


def _local(mask: torch.Tensor, channels: int | None = None) -> dict[str, list[int]]:
    return {"pruned_filters": dead_filters(mask).nonzero().flatten().tolist(),
            "pruned_input_channels": dead_inputs(mask, channels).nonzero().flatten().tolist()}


def _local_report(model, masks, spec, device, reason: str) -> dict[str, Any]:
    """Without a chain: each layer's whole pruned filters and input channels, counted in that layer."""
    mods, macs = dict(model.named_modules()), layer_macs(model, spec, device)
    rows, layers = {}, {}
    for key, mask in masks.items():
        name = key[: -len(".weight")]
        loc = _local(mask)
        row = _layer_row(mods[name], macs[name], len(loc["pruned_filters"]), len(loc["pruned_input_channels"]), 1)
        o = row["out_after"]  # a dead filter's output is its bias, broadcast: the bias stays
        row["params_after"] += (row["out"] - o) if mods[name].bias is not None else 0
        rows[name], layers[name] = row, loc
    totals = _totals(model, rows, 0, sum(macs.values()))
    return {"chain": False, "reason": reason, "scope": "layer-local", "layers": layers, "interfaces": [],
            "totals": {"chain": False, "scope": "layer-local", **totals}}


def structure_report(model: nn.Module, masks: Masks, spec: InputSpec,
                     device: torch.device | str = "cpu") -> dict[str, Any]:
    """The pruned_channels.json content: pruned channel indices per layer and the parameters / MACs
    that deleting them removes ("totals" goes into summary.json)."""
    try:
        chain = trace_chain(model, spec, device)
    except ConfigError as exc:
        return _local_report(model, masks, spec, device, str(exc))
    return _chain_report(model, masks, spec, device, chain)
