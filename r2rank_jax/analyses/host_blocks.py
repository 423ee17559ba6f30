"""Multi-host model analyses: each process scores its own block of the records, every host gets all scores.

    scorer = HostBlocks(PointwiseScorer(ctx, "r2rank"))   # one process: the same calls as the scorer itself
    scores = scorer(records)                             # [N, K], every host; this host scored its block only

The wrapped scorer runs on this process's block (`distributed.host_block`) with a host-local model
(`ModelContext.load` builds on `distributed.local_mesh`), so no collective runs while scoring; the
blocks are then gathered (`distributed.gather_blocks`) in process order, i.e. in records order. A
listwise scorer's parse statistics (`last_stats`) are summed over the processes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from r2rank_jax import distributed
from r2rank_jax.data.benchmark import Record

PARSE_COUNTS = ("parsed", "partial", "unparsable", "with_repeats", "with_out_of_range")


class HostBlocks:
    """A scorer (records → scores `[N, K]`) scored block by block over the processes (module docstring)."""

    def __init__(self, scorer: Any):
        self.scorer = scorer
        self.last_stats: dict | None = None

    def __call__(self, records: Sequence[Record]) -> np.ndarray:
        if len(records) < jax.process_count():
            raise distributed.DistributedError(f"{len(records)} users over {jax.process_count()} processes: each "
                                               "needs at least one (raise --max-users or run fewer processes)")
        block = list(records)[distributed.host_block(len(records))]
        scores = distributed.gather_blocks(np.asarray(self.scorer(block), np.float64), len(records))
        stats = getattr(self.scorer, "last_stats", None)
        self.last_stats = None if stats is None else _summed(stats)
        return scores


def _summed(stats: dict) -> dict:
    """Parse statistics of every process's block: counts summed, rates recomputed (`ParseStats.as_dict`)."""
    from jax.experimental import multihost_utils

    from r2rank_jax.eval.listwise import ParseStats

    mine = np.asarray([[int(stats[k]) for k in PARSE_COUNTS]], np.int64)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(PARSE_COUNTS)).sum(axis=0)
    return ParseStats(**{k: int(v) for k, v in zip(PARSE_COUNTS, every)}).as_dict()
