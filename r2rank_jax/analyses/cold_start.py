"""Item cold-start tiers: test users bucketed by how often their positive item occurs in the train
split (train users' histories and positives, the popularity baseline's count), metrics per tier and
method from the eval stage's per-user score files (no model runs).

    python -m r2rank_jax.analyses.cold_start --workdir DIR [--tiers 3 | --edges 2,10] [--methods a,b]

Writes WORKDIR/analyses/cold_start.{md,json,png}.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from r2rank_jax.analyses import stratified
from r2rank_jax.data.benchmark import Record

WHAT = ("Users bucketed by the train-split interaction count of their positive item "
        "(occurrences in train users' histories and positives).")


def positive_train_counts(records: Sequence[Record], train: Sequence[Record]) -> np.ndarray:
    """`[N]` number of times each record's positive occurs in the train records (history or positive)."""
    counts: dict[str, int] = {}
    for r in train:
        for item in (*r.history, r.positive):
            counts[item] = counts.get(item, 0) + 1
    return np.array([counts.get(r.positive, 0) for r in records], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    stratified.run(argv, "cold_start", __doc__, "Item cold-start tiers", WHAT,
                   "train interactions of the positive item", positive_train_counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
