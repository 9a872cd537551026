"""User-facing errors.

Every error a user can cause (bad flag, missing data, corrupt file, ...) is raised as a
subclass of :class:`CausalPruneError`. The CLI prints ``error: <message>`` on one line and
exits with status 2, never a traceback. Messages say what went wrong *and* what to do.
"""

from __future__ import annotations

__all__ = [
    "CausalPruneError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "MaskError",
    "TrainingError",
    "RecordMemoryError",
    "EmptyLayerError",
]


class CausalPruneError(Exception):
    """Base class: a problem the user can fix; shown as one line without a traceback."""


class ConfigError(CausalPruneError, ValueError):
    """A hyperparameter or flag is out of range, unknown, or inconsistent."""


class DataError(CausalPruneError):
    """A data set is missing, empty, unreadable or malformed."""


class CheckpointError(CausalPruneError):
    """A checkpoint or mask file is missing, truncated, corrupt or unsafe."""


class MaskError(CausalPruneError):
    """Masks do not fit a model (names or shapes differ)."""


class TrainingError(CausalPruneError):
    """Training diverged (NaN/inf loss) or could not proceed."""


class RecordMemoryError(CausalPruneError):
    """The pruning-phase recording would not fit in the memory that is free."""


class EmptyLayerError(CausalPruneError):
    """A pruning decision would remove every weight of a layer."""
