"""Paths as the report shows them: relative, never absolute.

A report is copied, committed and mailed; an absolute path only shows where it was written (the
folder layout of that machine) and means nothing anywhere else. Paths are shown relative to the
report file's folder, where a reader who keeps the runs beside it can follow them; where no such
path exists (another drive on Windows), relative to the runs' common ``--out`` folder; failing
that, the last name alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["relative_to", "path_shower", "common_out"]


def relative_to(path: str | os.PathLike, bases: Iterable[str | os.PathLike | None]) -> str:
    """``path`` relative to the first base that admits a relative path (POSIX separators)."""
    # Both sides with symlinks resolved: a sweep stores resolved --match-layers paths, and a report
    # folder reached through a link would otherwise yield "../../" up to the root and the whole
    # absolute path again below it.
    p = os.path.realpath(os.fspath(path))
    for base in bases:
        if base is None:
            continue
        try:
            return Path(os.path.relpath(p, os.path.realpath(os.fspath(base)))).as_posix()
        except ValueError:  # another drive: no relative path exists
            continue
    return Path(p).name


def common_out(run_dirs: Iterable[str | os.PathLike]) -> str | None:
    """The folder that holds all the run folders (their common ``--out``), or None."""
    parents = [os.path.dirname(os.path.realpath(os.fspath(d))) for d in run_dirs]
    try:
        return os.path.commonpath(parents) if parents else None
    except ValueError:  # different drives
        return None


def path_shower(report: str | os.PathLike, run_dirs: Iterable[str | os.PathLike]) -> Callable[[object], str]:
    """A function that shows a path as the report ``report`` must: relative (see the module docstring)."""
    bases = (os.path.dirname(os.path.realpath(os.fspath(report))), common_out(run_dirs))
    return lambda path: relative_to(os.fspath(path), bases)  # type: ignore[arg-type]
