"""Host shards that keep the global batch: host i of n reads rows [i*b, (i+1)*b) of every global batch.

Sharding records before batching (``ds[i::n]``) gives every host a different shuffle and so a global
batch unlike the one-process run's. Here every host shuffles the *same* global order (same seed) and
keeps only its block of each global batch of ``B = b * n`` rows, so the rows that n hosts feed to one
step (host i's block at rows ``[i*b, (i+1)*b)`` of the global array, `r2rank_jax.distributed`) are
exactly the batch one process with ``batch_size=B`` would read. Only the host's own rows are ever
tokenized and collated.

Epochs: grain reads index ``e * len + j`` of a shuffled dataset as element j of epoch e (reseeded per
epoch); `HostRows` maps its indices the same way, so later epochs match too.
"""
from __future__ import annotations

from typing import Any

import grain


class HostRows(grain.MapDataset):
    """Host ``shard_index``'s rows of every global batch of ``host_batch * shard_count`` rows of ``parent``.

    ``drop_remainder``: the last, short global batch is dropped (every host then has the same number
    of rows, a multiple of ``host_batch``); otherwise its rows ``[i*b, (i+1)*b)`` that exist are kept,
    so hosts may end an epoch with different (possibly zero) rows in their last batch.
    """

    def __init__(self, parent: grain.MapDataset, shard_index: int, shard_count: int, host_batch: int,
                 drop_remainder: bool = True):
        super().__init__(parent)
        if not 0 <= shard_index < shard_count or host_batch < 1:
            raise ValueError(f"HostRows: need 0 <= shard_index < shard_count and host_batch >= 1, got "
                             f"{shard_index}, {shard_count}, {host_batch}")
        self._n = len(parent)
        self._index, self._b, self._global = shard_index, host_batch, host_batch * shard_count
        full, rest = divmod(self._n, self._global)
        tail = 0 if drop_remainder else min(max(rest - shard_index * host_batch, 0), host_batch)
        self._length = full * host_batch + tail

    def __len__(self) -> int:
        return self._length

    def parent_index(self, index: int) -> int:
        epoch, j = divmod(index, self._length)
        g, r = divmod(j, self._b)
        return epoch * self._n + g * self._global + self._index * self._b + r

    def __getitem__(self, index: Any):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.parent_index(index)]

    def __str__(self) -> str:
        return f"HostRows(shard={self._index}, host_batch={self._b}, global_batch={self._global})"
