"""The recorder: per-step data of the pruning phase, kept in memory on the training device.

At every optimizer step t of the N_prune SGD epochs it keeps (docs/method.md §1, paper eq. 8)

* ``L_t``: the mean loss of minibatch t at theta_t (the step's own forward pass, train mode);
* ``dtheta_t = theta_{t+1} - theta_t`` of every *live* prunable weight, stored divided by the
  learning rate (for plain SGD that is minus the gradient), in bf16 or fp32. Squared deltas are
  ~1e-16..1e-10: fp16 would underflow, bf16 keeps fp32's exponent range, and dividing by lr keeps
  the stored values near 1.

Only weights that are still unpruned are recorded, so the cost falls as sparsity rises. The
buffer is one ``(T, D_live)`` tensor; layer ``k`` owns columns ``offsets[k]:offsets[k+1]``, so
one row of one layer is contiguous (what the fused solver wants).

Memory: 2 B (bf16) per step per live weight, plus theta_t in fp32 (4 B per live weight, not per
step); ``after_step`` updates it in place and allocates nothing. A recording larger than the
budget (``--record-budget``, default 90% of free memory) is spilled to a memory-mapped file
(spill.py) when the caller names one, and refused otherwise.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import RecordMemoryError
from ..masks import Masks, weight_of
from ..models import prunable_layers
from ..units import format_bytes, free_memory_bytes
from .slots import LayerSlot
from .spill import open_spill

__all__ = ["LayerSlot", "Recorder", "indexed_device"]

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def indexed_device(device: torch.device | str) -> torch.device:
    """``device`` with its index made explicit: ``cuda`` is the current CUDA device, ``cuda:0``
    on most machines. Parameters always carry an index, and ``torch.device("cuda") !=
    torch.device("cuda:0")``: without this, the recorder's test whether a parameter already
    lives on its device fails for every layer at every step and takes the allocating path."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class Recorder:
    """Keeps (dtheta_t / lr, L_t) for every step; attach it to the SGD loop via ``after_step``."""

    def __init__(self, model: nn.Module, masks: Masks, *, lr: float, max_steps: int,
                 dtype: str = "bf16", device: torch.device | None = None, budget_bytes: int | None = None,
                 layers: "set[str] | None" = None, spill_path: "str | os.PathLike | None" = None):
        mods = prunable_layers(model)
        self.lr = float(lr)
        self.slots: list[LayerSlot] = []
        # Every prunable weight in model order; ``layers`` (DDP: the ones this rank fits) limits
        # what is recorded, not this list.
        self.layer_keys = [f"{name}.weight" for name in mods]
        col = 0
        for name, module in mods.items():
            key = f"{name}.weight"
            if layers is not None and key not in layers:
                continue
            p = weight_of(module)
            mask = masks[key].reshape(-1).to(p.device)
            idx = None if bool(mask.all()) else mask.nonzero().squeeze(1)
            n = p.numel() if idx is None else idx.numel()
            self.slots.append(LayerSlot(key, p, idx, col, col + n))
            col += n
        self.width = col
        self.device = indexed_device(device or (self.slots[0].param.device if self.slots else torch.device("cpu")))
        self.dtype = _DTYPES[dtype]
        self.max_steps = max_steps
        need = self.bytes_needed(max_steps, col, dtype)
        avail = budget_bytes if budget_bytes is not None else free_memory_bytes(self.device)
        # An explicit budget is taken as given; free memory keeps 10% for training and the Lasso.
        self.budget = int(avail) if budget_bytes is not None else int(0.9 * avail)
        # Over budget: spill to a memory-mapped file when the caller gave one (spill.py), else refuse.
        self.spill = open_spill(spill_path, max_steps, col, self.dtype, self.device, self.budget) \
            if need > self.budget and spill_path is not None else None
        if need > self.budget and self.spill is None:
            raise RecordMemoryError(
                f"the recording needs {format_bytes(need)} ({max_steps} steps x {col:,} live weights x "
                f"{self.dtype.itemsize} B) but only {format_bytes(avail)} is available on {self.device}; "
                "use --record-dtype bf16, fewer --n-prune epochs, a larger --batch-size, --solver online, "
                "or --max-steps-per-epoch")
        self.buffer = torch.empty((0 if self.spill else max_steps, col), dtype=self.dtype, device=self.device)
        self.losses = torch.zeros(max_steps, dtype=torch.float64, device=self.device)
        self.steps = 0
        # theta_t of the live weights, one fp32 vector per layer, updated in place every step; pruned
        # layers gather their live weights into one shared scratch (no allocation per step).
        n_idx = max([s.stop - s.start for s in self.slots if s.idx is not None], default=0)
        self._scratch = torch.empty(n_idx, dtype=torch.float32, device=self.device)
        self._prev = [self._live(s).clone() for s in self.slots]

    @staticmethod
    def bytes_needed(steps: int, width: int, dtype: str = "bf16") -> int:
        return steps * width * _DTYPES[dtype].itemsize + steps * 8

    def _live(self, s: LayerSlot) -> torch.Tensor:
        """Current fp32 values of one layer's live weights: a view of the parameter when all are
        live, else gathered into the shared scratch (valid until the next call)."""
        flat = s.param.detach().reshape(-1)
        if s.idx is None:
            return flat.to(device=self.device, dtype=torch.float32)
        if flat.device == self.device and flat.dtype == torch.float32:
            return torch.index_select(flat, 0, s.idx, out=self._scratch[: s.stop - s.start])
        return flat.index_select(0, s.idx).to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def before_step(self) -> None:
        """Take theta_t now. Call it right before ``optimizer.step()`` when the weights may have changed
        since the last step (a rewind, Algorithm 1 line 7, or any edit of the user's): the next row is
        then that step's own dtheta. Without it, theta_t is where the previous step (or the
        construction) left the weights."""
        for s, prev in zip(self.slots, self._prev):
            prev.copy_(self._live(s))

    @torch.no_grad()
    def after_step(self, loss: torch.Tensor) -> None:
        """Call right after ``optimizer.step()`` with the loss of that step's forward pass."""
        if self.steps >= self.max_steps:
            self._grow()
        row = self.buffer[self.steps] if self.spill is None else self.spill.next_row()
        for s, prev in zip(self.slots, self._prev):
            cur = self._live(s)
            # prev <- cur - prev in place, then / lr straight into the (bf16) row: bit for bit the
            # fp32 (cur - prev) / lr followed by a cast, with no temporary allocated per step.
            torch.sub(cur, prev, out=prev)
            torch.div(prev, self.lr, out=row[s.start:s.stop])
            prev.copy_(cur)
        if self.spill is not None:
            self.spill.commit_row()
        # Under DDP the caller hands in the global loss (dist.MeanLossOverRanks): this stores what it gets.
        self.losses[self.steps] = loss.detach().to(torch.float64)
        self.steps += 1

    def _grow(self) -> None:
        """Double the capacity (for user loops whose length is not known in advance); a spilled
        recording grows on disk, so only its losses need room."""
        cap = max(2 * self.max_steps, 16)
        if self.spill is None:
            buf = torch.empty((cap, self.width), dtype=self.dtype, device=self.device)
            buf[: self.steps].copy_(self.buffer[: self.steps])
            self.buffer = buf
        losses = torch.zeros(cap, dtype=torch.float64, device=self.device)
        losses[: self.steps].copy_(self.losses[: self.steps])
        self.losses, self.max_steps = losses, cap

    # ------------------------------------------------------------------------------------------
    def targets(self, lag: int = 1) -> torch.Tensor:
        """y_s = L_{s+lag} - L_{s+lag-1} as float32 (eq. 8 for lag 1; eq. 17 for the momentum model)."""
        L = self.losses[: self.steps]
        return (L[lag:] - L[lag - 1: -1]).to(torch.float32)

    def features(self, *, momentum: bool, granularity: str, slots=None) -> list:
        """The Lasso's features of this recording (features.layer_features), for ``slots`` or all."""
        from .features import layer_features

        return layer_features(self.deltas(), self.slots if slots is None else slots, self.lr, momentum=momentum,
                              granularity=granularity)

    def deltas(self) -> torch.Tensor:
        """The recorded (T, D_live) matrix of dtheta / lr (memory-mapped from disk when spilled;
        recording stops there)."""
        return self.spill.finish() if self.spill is not None else self.buffer[: self.steps]

    def held_bytes(self) -> int:
        """Bytes of the recording held in memory: the (T, D) buffer, or the two chunks of a
        spilled one, plus the losses."""
        data = self.spill.held_bytes() if self.spill is not None else self.buffer.numel() * self.buffer.element_size()
        return data + self.losses.numel() * 8

    def peak_bytes(self) -> int:
        """All the memory the recorder holds (``after_step`` allocates nothing more): the
        recording, theta_t in fp32, the gather scratch and the live-weight indices."""
        state = 4 * (sum(p.numel() for p in self._prev) + self._scratch.numel())
        idx = sum(s.idx.numel() * s.idx.element_size() for s in self.slots if s.idx is not None)
        return self.held_bytes() + state + idx

    def describe(self) -> str:
        """One log line: how big the recording is and where it lives."""
        size = self.max_steps * (self.width * self.dtype.itemsize + 8)
        name = next(k for k, v in _DTYPES.items() if v == self.dtype)
        head = f"recording {self.max_steps} steps x {self.width:,} live weights = {format_bytes(size)} ({name})"
        if self.spill is None:
            return head + " in memory"
        chunk = self.spill.rows_per_chunk * self.width * self.dtype.itemsize
        return (head + f", over the {format_bytes(self.budget)} memory budget: spilled to {self.spill.path} "
                f"in {format_bytes(chunk)} chunks (2 in memory), memory-mapped for the Lasso")

    def free(self) -> None:
        """Release the recording; a spill file is deleted."""
        if self.spill is not None:
            self.spill.delete()
        self.buffer = torch.empty(0)
        self._prev, self._scratch = [], torch.empty(0)
