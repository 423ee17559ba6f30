"""Progress bars for long loops over users or pairs: tqdm on stderr, silent when stderr is not a terminal
(CI logs, pipes, tests) or when ``R2RANK_PROGRESS=0``.

    with progress.bar(total=len(users), desc="eval r2rank", unit="user") as bar:
        for ...: bar.update(n)
"""
from __future__ import annotations

import os
import sys
from typing import Any


def enabled() -> bool:
    """True when bars are shown: stderr is a terminal and R2RANK_PROGRESS is not "0"."""
    if os.environ.get("R2RANK_PROGRESS", "") == "0":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(total: int | None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (a no-op one when `enabled()` is False); use as a context manager, `.update(n)`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=not enabled())
