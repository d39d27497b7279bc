"""User-facing errors. Every message names the file, line or value at fault and what was expected.

Library code raises these; the CLI catches :class:`DarecError` and prints the message without a
traceback. What the user should know but need not fix (a time column guessed, data that changed
where that was allowed) is a :class:`DataWarning`, which the CLI prints as ``warning: ...``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DarecError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "DuplicateIdError",
    "UnknownIdError",
    "DataWarning",
]


class DarecError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(DarecError):
    """An unknown option, a value of the wrong type, or an invalid combination."""


class DataError(DarecError):
    """Malformed or unusable input data."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line


class CheckpointError(DarecError):
    """A run folder or checkpoint that is missing, incomplete or incompatible."""


class UnknownIdError(DarecError):
    """A user or item id that the trained model does not know."""


class DuplicateIdError(DataError):
    """An item given as new whose id the run already knows (or that is given twice)."""


class DataWarning(UserWarning):
    """Data read under an assumption the user should know about (e.g. the time column chosen,
    the file order taken as the time order, data that changed since training)."""
