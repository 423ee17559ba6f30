"""Host shards that keep the global batch: host i of n keeps rows [i*b, (i+1)*b) of every global batch.

Sharding records before batching (``ds[i::n]``) gives every host its own shuffle, so the n hosts'
rows of one step are not the batch one process would read, and each host picks its own length
buckets from its own rows, so the hosts' arrays of one step can differ in shape (a collective
mismatch: Gloo/NCCL abort or hang). Here every host batches the *same* global order (same seed) into
global batches of ``B = b * n`` rows, collates the global batch (so the bucket lengths are the global
batch's) and keeps its block of rows. The n blocks side by side are exactly the one-process batch of
B rows, epoch after epoch; a short last batch leaves padding rows (``example_mask`` False) on some
hosts, but every host yields the same number of batches of the same shapes.

The price: each host collates (and, in the RL/eval pipeline, tokenizes) all B rows of a global batch,
not only its own b; small next to a training step, and what makes the shapes agree without a
cross-host exchange.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class HostSlice:
    """Grain ``batch_fn``: ``collate`` the global batch, keep host ``shard_index``'s block of rows."""

    def __init__(self, collate: Callable[[Sequence[Any]], dict[str, np.ndarray]], global_batch: int,
                 shard_index: int, shard_count: int):
        if not 0 <= shard_index < shard_count or global_batch % shard_count:
            raise ValueError(f"HostSlice: need 0 <= shard_index < shard_count dividing the global batch, got "
                             f"{shard_index}, {shard_count}, {global_batch}")
        self.collate = collate
        b = global_batch // shard_count
        self.rows = slice(shard_index * b, (shard_index + 1) * b)

    def __call__(self, examples: Sequence[Any]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v[self.rows]) for k, v in self.collate(examples).items()}
