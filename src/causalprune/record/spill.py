"""Memory-bounded recording: the (T, D) matrix of dtheta/lr spilled to a memory-mapped file.

When ``T x (unpruned weights) x bytes`` does not fit the record budget (``--record-budget``,
default derived from free memory), the recorder keeps only two chunks of rows in memory. Each
full chunk is appended to one file per pruning iteration, in one large sequential write on a
background thread, so that the write overlaps the next training steps (never a file per step).

For the Lasso the file is opened as a memory map: ``np.memmap`` -> ``torch.from_numpy`` is
zero-copy, and the fused solver reads each layer's columns of a row in place, so the kernel
pages rows in as the solver visits them and may evict them again (the pages are clean). The
layout is the in-memory one, row-major (T, D), so one row of one layer stays contiguous
(docs/method.md §8: per sample the solver streams x once).

The file is deleted after the Lasso, or when its owner is garbage-collected; a run killed
while recording leaves it behind, and the resumed run truncates the same file.
"""

from __future__ import annotations

import os
import shutil
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import RecordMemoryError

__all__ = ["CHUNK_BYTES", "SpillFile", "chunk_rows", "disk_free_bytes", "evict_from_cache", "open_spill"]

CHUNK_BYTES = 256 * 1024**2  # one write; big enough for sequential disk speed, small next to RAM
# numpy has no bfloat16: bf16 rows travel as their int16 bit patterns.
_NUMPY = {torch.bfloat16: (np.int16, torch.int16), torch.float32: (np.float32, torch.float32)}
_ADVICE = ("free disk space, point --out at a bigger disk, raise --record-budget, shorten the recording "
           "(--max-steps-per-epoch, --n-prune) or use --solver online")


def disk_free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def chunk_rows(width: int, itemsize: int, budget_bytes: int) -> int:
    """Rows per chunk: at most CHUNK_BYTES and an eighth of the budget (two chunks are held),
    but never less than one row."""
    row = max(width * itemsize, 1)
    return max(1, min(CHUNK_BYTES, budget_bytes // 8) // row)


def open_spill(path: str | os.PathLike, steps: int, width: int, dtype: torch.dtype, device: torch.device,
               budget_bytes: int) -> "SpillFile":
    """The spill file of a recording of ``steps`` rows that does not fit ``budget_bytes`` of memory."""
    row = width * dtype.itemsize
    if 2 * row + 8 * steps > budget_bytes:
        raise RecordMemoryError(f"even two recorded rows ({2 * row / 1024**2:.1f} MB) exceed the recording's "
                                f"memory budget ({budget_bytes / 1024**2:.1f} MB); raise --record-budget or use "
                                "--solver online")
    rows = min(chunk_rows(width, dtype.itemsize, budget_bytes), max(steps, 1))
    return SpillFile(path, width, dtype, rows_per_chunk=rows, device=device, expected_rows=steps)


def evict_from_cache(path: str | os.PathLike) -> None:
    """Flush ``path`` to disk and drop its pages from the page cache (for cold-read benchmarks)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the per-run "recording" folder, once it is empty
    except OSError:
        pass


class SpillFile:
    """Append-only (rows, width) matrix on disk: fill ``next_row()``, then ``commit_row()``.

    ``finish()`` returns the whole matrix as a CPU tensor backed by a memory map of the file;
    ``delete()`` removes the file. Two chunks of ``rows_per_chunk`` rows live on ``device``.
    """

    def __init__(self, path: str | os.PathLike, width: int, dtype: torch.dtype, *, rows_per_chunk: int,
                 device: torch.device | str = "cpu", expected_rows: int = 0):
        if dtype not in _NUMPY:
            raise RecordMemoryError(f"cannot spill {dtype} recordings; use --record-dtype bf16 or fp32")
        self.path, self.width, self.dtype = Path(path), int(width), dtype
        need = expected_rows * self.width * dtype.itemsize
        stale = self.path.stat().st_size if self.path.is_file() else 0  # a killed run's file, truncated below
        free = disk_free_bytes(self.path.parent) + stale
        if need > 0.95 * free:
            raise RecordMemoryError(f"the recording does not fit in memory and spilling it to {self.path} needs "
                                    f"{need / 1024**3:.1f} GB but only {free / 1024**3:.1f} GB is free there; "
                                    f"{_ADVICE}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read-write: the map is made from this descriptor, not the path, so a folder cleaned
        # while recording (the file unlinked) cannot break the Lasso. "w" truncates a killed run's file.
        self._fh = open(self.path, "w+b")
        self._cleanup = weakref.finalize(self, _remove, self.path)
        self.rows_per_chunk = max(1, int(rows_per_chunk))
        self._chunks = [torch.empty((self.rows_per_chunk, self.width), dtype=dtype, device=device) for _ in range(2)]
        self._active, self._fill, self.rows = 0, 0, 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill")
        self._pending: Future | None = None
        self._matrix: torch.Tensor | None = None

    def held_bytes(self) -> int:
        """Memory held by the chunks (the file's pages are the kernel's page cache)."""
        return sum(c.numel() * c.element_size() for c in self._chunks)

    def file_bytes(self) -> int:
        return self.rows * self.width * self.dtype.itemsize

    def next_row(self) -> torch.Tensor:
        """The (width,) row to fill for the next step (valid until ``commit_row``)."""
        if self._fh is None:
            raise RecordMemoryError(f"{self.path} is already closed for writing; start a new recording")
        return self._chunks[self._active][self._fill]

    def commit_row(self) -> None:
        self._fill += 1
        self.rows += 1
        if self._fill == self.rows_per_chunk:
            self._flush()

    def _flush(self) -> None:
        if self._fill == 0:
            return
        self._wait()  # the other chunk's write has finished: it may be refilled after the swap
        rows = self._chunks[self._active][: self._fill].cpu()  # no copy on CPU
        arr = rows.view(_NUMPY[self.dtype][1]).numpy()
        self._pending = self._writer.submit(self._fh.write, arr)
        self._active, self._fill = 1 - self._active, 0

    def _wait(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        try:
            pending.result()
        except OSError as exc:
            raise RecordMemoryError(f"could not write the spilled recording {self.path} "
                                    f"({exc.strerror or exc}); {_ADVICE}") from exc

    def finish(self) -> torch.Tensor:
        """Write the last rows, close the file and return it as a (rows, width) memory-mapped tensor."""
        if self._matrix is not None:
            return self._matrix
        self._flush()
        self._wait()
        self._writer.shutdown(wait=True)
        fh, self._fh, self._chunks = self._fh, None, []
        try:
            fh.flush()
            if self.rows == 0:
                self._matrix = torch.empty((0, self.width), dtype=self.dtype)
                return self._matrix
            # A shared map ("r+"): writable, as torch.from_numpy wants, and -- unlike a private
            # copy-on-write map ("c") -- not charged against the commit limit, which refuses a
            # map larger than RAM (ENOMEM for a 42 GB recording on a 24 GB machine). Nothing writes it.
            mm = np.memmap(fh, dtype=_NUMPY[self.dtype][0], mode="r+", shape=(self.rows, self.width))
        finally:
            fh.close()  # the map holds its own reference to the file
        self._matrix = torch.from_numpy(mm).view(self.dtype)
        return self._matrix

    def delete(self) -> None:
        """Drop the chunks and the map and remove the file (idempotent)."""
        if self._fh is not None:
            try:
                self._wait()
            finally:
                self._writer.shutdown(wait=True)
                self._fh.close()
                self._fh = None
        self._chunks, self._matrix = [], None
        self._cleanup()
