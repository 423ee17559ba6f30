"""Write a directory all at once: build it under a temporary name beside the target, then rename."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator


def check_target(out: str | os.PathLike[str], overwrite: bool) -> pathlib.Path:
    """Raises FileExistsError when ``out`` is a non-empty directory (or a file) and not ``overwrite``."""
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
    return out


@contextlib.contextmanager
def staged_directory(out: str | os.PathLike[str], overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yields an empty temporary directory next to ``out``; on success it replaces ``out``.

    On an exception the temporary directory is removed and ``out`` is left untouched. The rename is
    atomic on one file system; an overwritten ``out`` is moved aside first and deleted afterwards.
    """
    out = check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result should look like mkdir's
    try:
        yield tmp
        check_target(out, overwrite)  # someone may have written there meanwhile
        old = None
        if out.is_dir():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "content")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
