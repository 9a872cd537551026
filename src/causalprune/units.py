"""Amounts of memory: free bytes on a device, and bytes read from and written for people."""

from __future__ import annotations

import os

import torch

__all__ = ["free_memory_bytes", "format_bytes", "parse_bytes"]


def free_memory_bytes(device: torch.device) -> int:
    """Memory that the recording may use on ``device`` (free GPU memory, or MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def parse_bytes(text: str) -> int:
    """'8GB' / '512MB' / '1.5 GiB' / '123' -> bytes."""
    t = text.strip().upper().replace("IB", "B").replace(" ", "")
    for suffix, mult in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024), ("B", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(float(t))
