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
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import CausalPruneError, CheckpointError

__all__ = [
    "atomic_path",
    "write_bytes",
    "copy_file",
    "write_text",
    "write_json",
    "read_json",
    "save_tensors",
    "load_tensors",
    "save_checkpoint",
    "load_checkpoint",
    "DiskFullError",
    "FolderLock",
    "lock_folder",
    "is_temporary",
    "remove_stale_temporaries",
    "clear_folder",
]


# What to do about a damaged file, unless the caller knows better (a run folder does).
RESTORE = "restore it from a copy or recreate it"
# The process umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
# A write that fails while less than this is free is reported as a full disk.
_FULL_BELOW = 1 << 20


class DiskFullError(CausalPruneError):
    """A write failed because the disk is full; the previous version of the file is kept."""


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
        _flush(tmp_path)  # the new content is on disk before it replaces ``path``
        # mkstemp creates 0600 files; results should be as readable as any file the user makes.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)  # make the rename itself durable (power loss, not only kills)
    except Exception as exc:
        # torch.save and safetensors report a full disk as RuntimeError / SafetensorError, not
        # OSError(ENOSPC): look at the free space before the partial temporary file is removed.
        full = _disk_full(exc, path.parent)
        tmp_path.unlink(missing_ok=True)
        if full:
            raise DiskFullError(
                f"disk full while writing {path}; the previous version is kept. "
                "Free some space and rerun the same command to resume."
            ) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _flush(file: Path) -> None:
    with open(file, "rb+") as fh:
        os.fsync(fh.fileno())


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed because the file system (or quota) is full."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
    text = str(exc)
    if "No space left" in text or "os error 28" in text or "Disk quota exceeded" in text:
        return True
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` onto ``dst`` atomically (a kill leaves the old ``dst`` or the whole copy)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


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


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                 advice: str = RESTORE) -> dict[str, torch.Tensor]:
    """Read a safetensors file (or a ``.pt`` file with weights_only=True) into a dict."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist" + ("" if advice == RESTORE else f"; {advice}"))
    if path.suffix == ".pt":
        obj = load_checkpoint(path, device, advice=advice)
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
            f"{advice}"
        ) from exc


def save_checkpoint(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", *, advice: str = RESTORE) -> Any:
    """``torch.load(weights_only=True)``: a crafted pickle cannot run code, it is refused."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist" + ("" if advice == RESTORE else f"; {advice}"))
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        unsafe, reason = _load_failure(exc)
        if unsafe:
            raise CheckpointError(
                f"{path} contains pickled code or objects that are not plain tensors ({reason}); refusing to "
                "load it (only tensors, numbers and strings are accepted)"
            ) from exc
        raise CheckpointError(f"{path} is corrupt, truncated or not a PyTorch checkpoint ({reason}); "
                              f"{advice}") from exc


def _load_failure(exc: BaseException) -> tuple[bool, str]:
    """(whether torch refused a forbidden object, a one-line reason) for a failed weights-only load.

    Every weights-only failure, random bytes included, starts with the same paragraph about
    ``weights_only``; only a named GLOBAL means the file asks for code or foreign classes."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return True, f"it asks for {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(Check the documentation|$)", text, re.S)
    if detail and detail.group(1).strip():
        return False, " ".join(detail.group(1).split())
    first = text.split(". ")[0].splitlines()[0] if text.strip() else type(exc).__name__
    return False, first


# Locks held by this process, by folder: flock conflicts even within one process when the
# file is opened twice, and an in-process rerun (tests, notebooks) must not lock itself out.
_LOCKS: dict[str, list] = {}  # resolved lock path -> [open file, holders in this process]


class FolderLock:
    """An exclusive lock on a folder's lock file, held until :meth:`release` (or the end of a
    ``with`` block, or the process).

    Two processes writing one run folder would interleave their stages; the second one is
    refused instead. The kernel drops the lock when the holder dies (even by SIGKILL), so a
    killed run never leaves a stale lock behind. Within one process the lock is counted, so a
    second holder of the same folder (a sweep that reopens a finished run) does not release it
    under the first.
    """

    def __init__(self, lock_file: str | os.PathLike, *, wait: bool = False):
        self.path = Path(lock_file)
        self._key: str | None = str(self.path.resolve())
        held = _LOCKS.get(self._key)
        if held is not None:
            held[1] += 1
            return
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; runs are still atomic per file
            self._key = None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            # wait=True: block until the holder is done (a shared stage another run is computing).
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            self._key = None
            raise CausalPruneError(f"{self.path.parent} is in use by another running process (pid {holder}); "
                                   "wait for it to finish, or stop it and rerun to resume") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        _LOCKS[self._key] = [fh, 1]

    def release(self) -> None:
        """Give the lock up (closing the file releases the kernel lock); safe to call twice."""
        key, self._key = self._key, None
        held = _LOCKS.get(key) if key else None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _LOCKS[key]
            held[0].close()

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_folder(lock_file: str | os.PathLike, *, wait: bool = False) -> FolderLock:
    """Take the lock of a folder (see :class:`FolderLock`); release it when the work ends. With
    ``wait`` a folder in use is waited for instead of refused."""
    return FolderLock(lock_file, wait=wait)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named like an ``atomic_path`` temporary (``.<name>.<random>.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def remove_stale_temporaries(folder: str | os.PathLike, owned: list[Path]) -> int:
    """Delete ``atomic_path`` temporaries a killed process left in ``folder`` and in its ``owned``
    subfolders (only call this while holding the folder's lock: then no live writer can own
    them). Folders not in ``owned`` are never entered. Returns the count."""
    places = [Path(folder)] + [p for p in owned if p.is_dir() and not p.is_symlink()]
    count = 0
    for place in places:
        found = place.iterdir() if place == Path(folder) else place.rglob("*")
        for tmp in found:
            if is_temporary(tmp) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                count += 1
    return count


def clear_folder(owned: list[Path]) -> None:
    """Remove the entries ``owned`` (a run's own files and folders); anything else stays."""
    import shutil

    for entry in owned:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
