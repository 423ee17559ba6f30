"""Static shapes: a sequence is padded to the smallest allowed bucket length that holds it (one
compiled program per bucket). The one place that checks bucket lengths, picks a bucket and says why
none fits. Imports nothing from the package, so every layer (models, sampling, data, train, eval) may."""
from __future__ import annotations

import bisect
from collections.abc import Sequence


def check(buckets: Sequence[int], what: str = "buckets") -> tuple[int, ...]:
    """`buckets` as a tuple, after checking they are increasing positive lengths (a ValueError naming
    `what` otherwise)."""
    out = tuple(buckets)
    if not out or list(out) != sorted(set(out)) or out[0] < 1:
        raise ValueError(f"{what} must be increasing positive lengths, got {buckets}")
    return out


def fitting(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= `length`, or None when none is (`buckets` increasing)."""
    i = bisect.bisect_left(buckets, length)
    return buckets[i] if i < len(buckets) else None


def choose(length: int, buckets: Sequence[int], what: str, hint: str = "", allow_empty: bool = True,
           article: str = "a ") -> int:
    """The smallest bucket >= `length` (`buckets` increasing); a ValueError "{article}{what} of {length}
    tokens exceeds the largest bucket {largest}{hint}" when none holds it, or "empty {what}: ..." when
    `length` is 0 and empty sequences are not allowed."""
    if length < 1 and not allow_empty:
        raise ValueError(f"empty {what}: every {what} needs at least one token")
    b = fitting(length, buckets)
    if b is None:
        raise ValueError(f"{article}{what} of {length} tokens exceeds the largest bucket {buckets[-1]}{hint}")
    return b
