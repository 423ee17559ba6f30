"""Line-by-line reading of plain or gzip text files with exact line numbers in errors.

Lines are decoded one at a time (not by a buffered text reader) so that an invalid byte sequence is
reported at the line where it really is.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import zlib
from collections.abc import Iterator
from typing import Any

from r2rank_jax.data.errors import DataError


def iter_lines(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, text)`` for every line (1-based, without the line terminator).

    ``*.gz`` files are decompressed on the fly; a truncated or corrupt stream raises `DataError` naming
    the line after the last one read. Undecodable bytes raise `DataError` naming their line.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise DataError(path, lineno, f"invalid {encoding} at byte {e.start} of the line") from None
                yield lineno, text.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(path, lineno + 1, f"corrupt or truncated gzip stream ({e})") from None


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line_number, object)`` for every non-blank line of a JSON Lines file."""
    for lineno, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def find_file(directory: pathlib.Path, stem: str) -> pathlib.Path:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists (plain first)."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(directory / stem, None, "file not found (also looked for .gz)")
