"""Crash-safe file I/O: every write goes to a temporary file in the same folder, is
fsynced, then renamed over the target (rename is atomic on POSIX), so a kill at any
moment leaves either the old file or the new one, never a torn one.

Loading is safe by construction: tensors come from safetensors or from
``torch.load(weights_only=True)``; a plain unpickle is never used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import CausalPruneError, CheckpointError

__all__ = [
    "atomic_path",
    "write_bytes",
    "write_text",
    "write_json",
    "read_json",
    "save_tensors",
    "load_tensors",
    "save_checkpoint",
    "load_checkpoint",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and the old ``path`` is untouched.
    A full disk (ENOSPC) is turned into a one-line error that says what to do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CausalPruneError(
                f"disk full while writing {path}; the previous version is kept. "
                "Free some space and rerun the same command to resume."
            ) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); delete it or restore it") from exc


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Write a flat ``{name: tensor}`` dict as safetensors, atomically."""
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (or a ``.pt`` file with weights_only=True) into a dict."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if path.suffix == ".pt":
        obj = load_checkpoint(path, device)
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{path} does not hold a flat dict of tensors")
        return obj
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "delete it and rerun to recompute it"
        ) from exc


def save_checkpoint(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: a crafted pickle cannot run code, it is refused."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path} contains pickled code or objects that are not plain tensors; refusing to load it "
                "(only tensors, numbers and strings are accepted)"
            ) from exc
        raise CheckpointError(f"{path} is corrupt or truncated ({msg}); delete it and rerun to recompute it") from exc
