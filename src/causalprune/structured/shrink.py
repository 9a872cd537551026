"""Physically smaller dense models from structured masks (``causal-prune shrink``).

For a plain chain (:mod:`causalprune.chain`), every channel that :func:`structure.plan_structure`
marks removable is deleted: the producer's filter and bias, the BatchNorm entries in between, and
the consumer's input slice. A removed channel that carried a constant v_c (its filter was pruned,
so it outputs relu(bias)) contributes ``v_c * sum(W[:, c])`` to the consumer, which is added to the
consumer's bias, so the small model computes the same function as the masked one (up to float
rounding of the shorter sums). :func:`max_abs_diff` measures that on real inputs, in float64 (must be
within the tolerance) and in float32 (reported).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..data.spec import InputSpec
from ..errors import CheckpointError, ConfigError, DataError
from ..masks import Masks, make_permanent
from .plan import Plan, plan_structure

__all__ = ["shrink_model", "apply_widths", "load_shrunk", "max_abs_diff", "shrink_run"]

_FORMAT = 1


def _new_layer(old: nn.Module, n_in: int, n_out: int, bias: bool) -> nn.Module:
    """A layer like ``old`` (same kernel, stride, padding, ...) with other widths."""
    if isinstance(old, nn.Linear):
        return nn.Linear(n_in, n_out, bias=bias)
    if isinstance(old, nn.modules.conv._ConvNd):
        return type(old)(n_in, n_out, old.kernel_size, stride=old.stride, padding=old.padding,
                         dilation=old.dilation, bias=bias, padding_mode=old.padding_mode)
    raise ConfigError(f"cannot resize a {type(old).__name__}")


def _fold(weight: torch.Tensor, consts: dict[int, float], per: int) -> torch.Tensor:
    """sum_c v_c * sum(W[:, c]) per output: what the constant channels added to each output."""
    out = torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
    for c, v in consts.items():
        if v != 0.0:
            part = weight[:, c * per:(c + 1) * per] if weight.dim() == 2 else weight[:, c]
            out += v * part.reshape(weight.shape[0], -1).double().sum(1)
    return out


def _columns(keep: list[int], per: int) -> list[int]:
    return [c * per + j for c in keep for j in range(per)]


def _resize_layer(model: nn.Module, plan: Plan, li: int) -> dict[str, Any]:
    name = plan.chain.layers[li]
    old = model.get_submodule(name)
    w = old.weight.detach()
    keep_out = plan.keep_out(li, w.shape[0])
    keep_in, fold = list(range(w.shape[1])), None
    if li > 0:
        itf = plan.chain.interfaces[li - 1]
        keep_in = _columns(plan.keep_out(li - 1, itf.channels), itf.per_channel)
        fold = _fold(w, plan.constants[li - 1], itf.per_channel)
    has_bias = old.bias is not None or (fold is not None and bool(fold.any()))
    new = _new_layer(old, len(keep_in), len(keep_out), has_bias).to(device=w.device, dtype=w.dtype)
    idx_out = torch.tensor(keep_out, device=w.device, dtype=torch.long)
    idx_in = torch.tensor(keep_in, device=w.device, dtype=torch.long)
    with torch.no_grad():
        new.weight.copy_(w.index_select(0, idx_out).index_select(1, idx_in))
        if has_bias:
            b = old.bias.detach().double() if old.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                                     device=w.device)
            b = b + fold if fold is not None else b
            new.bias.copy_(b.index_select(0, idx_out).to(w.dtype))
    model.set_submodule(name, new)
    return {"type": type(old).__name__, "in": len(keep_in), "out": len(keep_out), "bias": has_bias}


def _resize_norm(model: nn.Module, name: str, keep: list[int]) -> int:
    old = model.get_submodule(name)
    dev = next(t.device for t in (old.weight, old.running_mean, torch.empty(0)) if t is not None)
    idx = torch.tensor(keep, dtype=torch.long, device=dev)
    new = type(old)(len(keep), eps=old.eps, momentum=old.momentum, affine=old.affine,
                    track_running_stats=old.track_running_stats).to(dev)
    with torch.no_grad():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(old, attr)
            if src is not None:
                getattr(new, attr).copy_(src.index_select(0, idx))
        if old.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(old.num_batches_tracked)
    model.set_submodule(name, new)
    return len(keep)


def shrink_model(model: nn.Module, masks: Masks, spec: InputSpec, device: torch.device | str = "cpu"
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """(a dense copy of the masked ``model`` without its removable channels, its widths).

    ``model`` is left untouched. Raises ConfigError (one line, with the reason) if ``model`` is
    not a plain chain of layers.
    """
    plan = plan_structure(model, masks, spec, device)
    small = copy.deepcopy(model)
    make_permanent(small)  # weight = weight_orig * mask as a plain parameter
    layers = {name: _resize_layer(small, plan, li) for li, name in enumerate(plan.chain.layers)}
    norms, kept = {}, {}
    for li, itf in enumerate(plan.chain.interfaces):
        keep = plan.keep_out(li, itf.channels)
        kept[itf.producer] = keep
        for n in itf.norms:
            norms[n] = _resize_norm(small, n, keep)
    widths = {"format": _FORMAT, "spec": {"channels": spec.channels, "size": spec.size,
                                          "num_classes": spec.num_classes},
              "layers": layers, "norms": norms, "kept_channels": kept}
    return small.eval(), widths


def apply_widths(model: nn.Module, widths: dict[str, Any]) -> nn.Module:
    """Resize the layers of a freshly built ``model`` to ``widths`` (to load a shrunk state_dict)."""
    try:
        for name, w in widths["layers"].items():
            old = model.get_submodule(name)
            model.set_submodule(name, _new_layer(old, int(w["in"]), int(w["out"]), bool(w["bias"])))
        for name, n in widths["norms"].items():
            old = model.get_submodule(name)
            model.set_submodule(name, type(old)(int(n), eps=old.eps, momentum=old.momentum, affine=old.affine,
                                                track_running_stats=old.track_running_stats))
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the layer widths do not fit this model ({exc}); rebuild it with "
                              "`causal-prune shrink RUN`") from exc
    return model


def load_shrunk(path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(shrunk model in eval mode, its widths) from a file written by ``causal-prune shrink``."""
    from ..models import build_model
    from ..storage import load_checkpoint

    ck = load_checkpoint(path, device)
    if not isinstance(ck, dict) or ck.get("kind") != "causalprune-shrunk":
        raise CheckpointError(f"{path} is not a model written by `causal-prune shrink`")
    widths = ck["widths"]
    model = apply_widths(build_model(ck["model_name"], InputSpec(**widths["spec"])), widths)
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match its own widths ({str(exc).splitlines()[0][:100]}); "
                              "rebuild it with `causal-prune shrink RUN`") from exc
    return model.to(device).eval(), widths


@torch.no_grad()
def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """max |a(x) - b(x)| over a batch, both in eval mode; with ``dtype`` (e.g. float64) on copies of
    both models in that precision, which separates a wrong transformation from float32 rounding."""
    if dtype is not None:
        a, b, x = copy.deepcopy(a).to(dtype), copy.deepcopy(b).to(dtype), x.to(dtype)
    ta, tb = a.training, b.training
    a.eval(), b.eval()
    try:
        return float((a(x).double() - b(x).double()).abs().max())
    finally:
        a.train(ta), b.train(tb)


def _check_run_is_chain(run_dir) -> None:
    """Refuse a non-chain model from the run's config alone, before loading any data."""
    from ..config import Config, config_from_dict
    from ..data import dataset_spec
    from ..masks import apply_masks, ones_masks
    from ..models import build_model
    from ..paths import RunPaths
    from ..storage import read_json
    from .fx_chain import trace_chain

    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise CheckpointError(f"{paths.root} is not a run folder (no config.json); pass a folder made by "
                              "`causal-prune run`")
    cfg = config_from_dict(read_json(paths.config), Config())
    spec = dataset_spec(cfg.dataset, cfg.model)
    model = build_model(cfg.model, spec)
    apply_masks(model, ones_masks(model))
    trace_chain(model, spec)


def shrink_run(run_dir, out=None, *, device: str = "cpu", data_dir: str = "", tol: float = 1e-5,
               samples: int = 256) -> dict[str, Any]:
    """Shrink a finished run's final model, check it against the masked model on ``samples`` real
    validation inputs (max |diff| <= ``tol``), and save it. Returns the report (also the JSON)."""
    from pathlib import Path

    from ..errors import MaskError
    from ..masks import current_masks
    from ..paths import RunPaths
    from ..results.flatness import load_final_model
    from ..storage import save_checkpoint, write_json
    from .flops import layer_macs

    _check_run_is_chain(run_dir)
    model, cfg, data = load_final_model(run_dir, device, data_dir)
    dev = next(model.parameters()).device
    small, widths = shrink_model(model, current_masks(model), data.spec, dev)
    x = _inputs(data.val, samples).to(dev)
    # The check is in float64: the transformation must be exact; in float32 the shorter sums of the
    # small model round differently (a few ulps of the logits), which is reported, not judged.
    diff, diff32 = max_abs_diff(model, small, x, torch.float64), max_abs_diff(model, small, x)
    if not diff <= tol:
        raise MaskError(f"the shrunk model differs from the masked one by {diff:.3g} > {tol:g} (float64) on "
                        f"{len(x)} validation inputs; please report this with the run folder")
    paths = RunPaths(run_dir)
    out = Path(out) if out else paths.shrunk
    macs = lambda m: sum(layer_macs(m, data.spec, dev).values())  # noqa: E731
    report = {"run": str(paths.root), "model": cfg.model, "file": str(out), "max_abs_diff": diff,
              "max_abs_diff_float32": diff32,
              "inputs_checked": int(len(x)), "params_masked_model": sum(p.numel() for p in model.parameters()),
              "params_shrunk": sum(p.numel() for p in small.parameters()),
              "macs_masked_model": macs(model), "macs_shrunk": macs(small), **widths}
    save_checkpoint(out, {"kind": "causalprune-shrunk", "model_name": cfg.model, "widths": widths,
                          "state_dict": small.state_dict(), "config": cfg.to_dict()})
    write_json(paths.shrunk_widths if out == paths.shrunk else out.with_suffix(".json"), report)
    return report


def _inputs(batches, n: int) -> torch.Tensor:
    """The first ``n`` inputs of a split (whole batches, then cut)."""
    xs, have = [], 0
    for x, _ in batches:
        xs.append(x)
        have += len(x)
        if have >= n:
            break
    if not xs:
        raise DataError("the run's validation split is empty; nothing to compare the shrunk model on")
    return torch.cat(xs)[:n]
