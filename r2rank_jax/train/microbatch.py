"""Splitting a batch into microbatches for gradient accumulation (`lax.scan` over the leading axis)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def split_rows(batch: Any, n: int, what: str = "rows") -> Any:
    """Every array `[B, ...]` of the pytree `batch` → `[n, B // n, ...]`, microbatch i holding rows
    i, i + n, i + 2n, ... (interleaved, so a row axis sharded over devices in contiguous blocks stays
    sharded the same way in every microbatch). B not divisible by n is a ValueError naming `what`."""
    rows = {x.shape[0] for x in jax.tree.leaves(batch)}
    if len(rows) != 1:
        raise ValueError(f"microbatches: the batch's arrays disagree on the number of {what}: {sorted(rows)}")
    (b,) = rows
    if b % n:
        raise ValueError(f"{b} {what} per batch are not divisible into {n} microbatches")
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape((b // n, n) + x.shape[1:]), 0, 1), batch)
