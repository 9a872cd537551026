"""The reference Lasso on an accelerator for a recording that lives on the host (a spilled one).

A recording too large for memory is a memory-mapped file (record/spill.py); the fit must still
run on the training device rather than fall back to the CPU unannounced. The visits are cut
into chunks: for each chunk the host gathers the stored rows its samples read (in their
storage type, bf16 stays 2 bytes), pins them and copies them to the device without blocking,
while the device is still busy with the previous chunk's steps; each step then forms its
features on the device exactly as torch_path.py does (blocks.combine_rows), so the result
equals the torch path on a resident recording. No step waits for the host: the rows, the
schedule and the visit order are all known before the device needs them.
"""

from __future__ import annotations

import numpy as np
import torch

from .blocks import FeatureBlock, combine_rows
from .torch_path import coord_update_, f32, residual

__all__ = ["CHUNK_BYTES", "solve_streamed"]

CHUNK_BYTES = 64 * 1024**2  # host rows per copy: large transfers, small next to device memory


def _gather(block: FeatureBlock, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stored rows that samples ``rows`` read from ``block`` (and the next rows for "cross"),
    copied to ``device`` without blocking the host (from pinned memory on CUDA)."""
    idx = torch.from_numpy(rows + block.row0)

    def send(t: torch.Tensor) -> torch.Tensor:
        if device.type == "cuda":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    a = send(block.data.index_select(0, idx))
    b = send(block.data.index_select(0, idx + 1)) if block.kind == "cross" else None
    return a, b


def solve_streamed(blocks: list[FeatureBlock], y: torch.Tensor, order: np.ndarray, etas: np.ndarray,
                   us: np.ndarray, clip: float, device: torch.device, progress: bool = False,
                   chunk_bytes: int = CHUNK_BYTES) -> list[torch.Tensor]:
    """Run the visit ``order`` on ``device`` over host-resident ``blocks``; γ per block on ``device``."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    gammas = [torch.zeros(b.dim, dtype=torch.float32, device=device) for b in blocks]
    qs = [torch.zeros_like(g) for g in gammas]
    y64 = y.detach().to(device=device, dtype=torch.float64)
    row_bytes = sum(b.dim * b.data.element_size() * (2 if b.kind == "cross" else 1) for b in blocks)
    per_chunk = max(1, chunk_bytes // max(row_bytes, 1))
    clip = f32(clip)
    with tqdm(total=len(order), desc="lasso steps (streamed)", disable=not progress or None) as bar:
        for t0 in range(0, len(order), per_chunk):
            rows = order[t0:t0 + per_chunk]
            chunk = [_gather(b, rows, device) for b in blocks]
            for j, i in enumerate(rows.tolist()):
                xs = [combine_rows(b, a[j], None if bb is None else bb[j]) for b, (a, bb) in zip(blocks, chunk)]
                r = residual(gammas, xs, y64[i]).float()
                t = t0 + j
                for g, q, x in zip(gammas, qs, xs):
                    coord_update_(g, q, x, r, f32(etas[t]), f32(us[t]), clip)
            bar.update(len(rows))
    return gammas
