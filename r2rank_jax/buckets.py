"""Static shapes: a sequence is padded to the smallest allowed bucket length that holds it (one
compiled program per bucket). The one place that picks a bucket and says why none fits."""
from __future__ import annotations

import bisect
from collections.abc import Sequence


def check(buckets: Sequence[int], what: str = "buckets") -> tuple[int, ...]:
    """`buckets` as a tuple, after checking they are increasing positive lengths."""
    out = tuple(buckets)
    if not out or list(out) != sorted(set(out)) or out[0] < 1:
        raise ValueError(f"{what} must be increasing positive lengths, got {out}")
    return out


def fitting(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= `length`, or None when none is (`buckets` increasing)."""
    i = bisect.bisect_left(buckets, length)
    return buckets[i] if i < len(buckets) else None


def choose(length: int, buckets: Sequence[int], what: str, hint: str = "", allow_empty: bool = True) -> int:
    """The smallest bucket >= `length`; a ValueError naming `what`, the length and the largest bucket (then
    `hint`) when none holds it, or when `length` is 0 and empty sequences are not allowed."""
    if length < 1 and not allow_empty:
        raise ValueError(f"empty {what}: every {what} needs at least one token")
    b = fitting(length, buckets)
    if b is None:
        raise ValueError(f"a {what} of {length} tokens exceeds the largest bucket {buckets[-1]}{hint}")
    return b
