"""The one error type raised for malformed data files."""
from __future__ import annotations

import os


class DataError(ValueError):
    """Malformed or inconsistent input data.

    The message always starts with ``FILE:LINE:`` (or ``FILE:`` when no single line is at fault), so
    the user can open the offending place directly.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str):
        self.path = os.fspath(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
