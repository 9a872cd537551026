"""Causal pruning as a ``torch.nn.utils.prune`` method.

    pruner = CausalPruner(model, sgd)                 # record a pruning phase (pruner.py)
    ...; gammas = causal_gammas(pruner)               # gamma of eq. (9), shaped like each weight
    causal_unstructured(model.fc1, "weight", gammas["fc1.weight"])
    global_causal_unstructured([(model.fc1, "weight"), (model.fc2, "weight")], gammas, model=model)

The rule is the paper's: keep a weight iff its gamma is nonzero (eq. 9-10). The masks are ordinary
``weight_orig``/``weight_mask`` reparametrisations, so ``prune.is_pruned``, ``prune.remove``,
``state_dict`` and a second pruning call (masks multiply, they only shrink) work as for
``prune.l1_unstructured``. gamma travels as the ``importance_scores`` of torch's API, which is
what keeps it aligned with the live entries when a PruningContainer combines masks.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .errors import MaskError

__all__ = ["CausalUnstructured", "causal_unstructured", "global_causal_unstructured", "causal_gammas"]


class CausalUnstructured(prune.BasePruningMethod):
    """Keep the entries whose gamma (the importance score) is nonzero; multiply into the mask."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        # ``t`` is gamma (importance_scores); inside a PruningContainer only the live entries.
        return default_mask * (t != 0).to(dtype=default_mask.dtype, device=default_mask.device)

    @classmethod
    def apply(cls, module: nn.Module, name: str, gamma: torch.Tensor):  # type: ignore[override]
        """Prune ``module.<name>`` where ``gamma == 0``; returns the pruning hook."""
        gamma = _checked(module, name, gamma)
        return super().apply(module, name, importance_scores=gamma)


def _checked(module: nn.Module, name: str, gamma) -> torch.Tensor:
    if not isinstance(gamma, torch.Tensor):
        raise MaskError(f"gamma for {type(module).__name__}.{name} must be a tensor, got {type(gamma).__name__}")
    param = getattr(module, name, None)
    if param is None:
        raise MaskError(f"{type(module).__name__} has no tensor {name!r} to prune")
    if tuple(gamma.shape) != tuple(param.shape):
        raise MaskError(f"gamma for {type(module).__name__}.{name} has shape {tuple(gamma.shape)} but the tensor "
                        f"has shape {tuple(param.shape)}; use causal_gammas() for weight-shaped gammas")
    return gamma.detach().to(device=param.device, dtype=torch.float32).contiguous()


def causal_unstructured(module: nn.Module, name: str, gamma: torch.Tensor) -> nn.Module:
    """Like ``prune.l1_unstructured(module, name, amount)``, with the causal rule: keep gamma != 0."""
    CausalUnstructured.apply(module, name, gamma)
    return module


def global_causal_unstructured(parameters: Iterable[tuple[nn.Module, str]], gammas, *,
                               model: nn.Module | None = None) -> None:
    """Like ``prune.global_unstructured(parameters, CausalUnstructured, importance_scores=...)``.

    ``gammas``: a dict keyed by ``(module, name)``, a sequence in the order of ``parameters``, or
    (with ``model``) a dict keyed by fully-qualified names such as ``"fc1.weight"`` (what
    :func:`causal_gammas` returns). Every parameter needs a gamma.
    """
    parameters = list(parameters)
    scores = {(m, n): _checked(m, n, g) for (m, n), g in _pair(parameters, gammas, model)}
    prune.global_unstructured(parameters, pruning_method=CausalUnstructured, importance_scores=scores)


def _pair(parameters: list[tuple[nn.Module, str]], gammas, model: nn.Module | None):
    if isinstance(gammas, Mapping) and gammas and all(isinstance(k, str) for k in gammas):
        if model is None:
            raise MaskError("gammas keyed by name (e.g. 'fc1.weight') need model=<the root module> to resolve them")
        fqn = {id(m): n for n, m in model.named_modules()}
        keyed = {}
        for m, n in parameters:
            if id(m) not in fqn:
                raise MaskError(f"a {type(m).__name__} in parameters is not part of model")
            keyed[(m, n)] = gammas.get(f"{fqn[id(m)]}.{n}" if fqn[id(m)] else n)
        gammas = keyed
    if isinstance(gammas, Mapping):
        out = [((m, n), gammas.get((m, n))) for m, n in parameters]
    elif isinstance(gammas, Sequence) and len(gammas) == len(parameters):
        out = list(zip(parameters, gammas))
    else:
        raise MaskError("gammas must be a dict keyed by (module, name) or by name, or a sequence as long as "
                        "parameters")
    missing = [f"{type(m).__name__}.{n}" for (m, n), g in out if g is None]
    if missing:
        raise MaskError(f"no gamma for {', '.join(missing[:5])}; every pruned parameter needs one")
    return out


def causal_gammas(pruner) -> dict[str, torch.Tensor]:
    """Fit eq. (9) on what a :class:`~causalprune.pruner.CausalPruner` recorded and return |gamma|
    per layer, shaped like the weight (0 for already-pruned weights; with a structured
    granularity every weight carries its group's gamma). ``gammas[k] != 0`` equals the masks
    ``pruner.compute_masks()`` returns."""
    from .record.features import group_ids

    pruner.compute_masks()  # sets pruner.gammas: |gamma| per live weight (or per group)
    granularity = pruner.cfg.granularity
    out = {}
    for slot in pruner.recorder.slots:
        g = pruner.gammas[slot.key].detach().float()
        numel = slot.param.numel()
        idx = slot.idx if slot.idx is not None else torch.arange(numel, device=g.device)
        idx = idx.to(g.device)
        if granularity != "weight":
            gid, _ = group_ids(slot.param.shape, idx, granularity)
            g = g[gid]
        full = torch.zeros(numel, dtype=torch.float32, device=g.device)
        full[idx] = g
        out[slot.key] = full.reshape(slot.param.shape)
    return out
