"""History-length strata: test users bucketed by the length of their history (as prepared, before
any prompt budget cut), metrics per stratum and method from the per-user score files (no model runs).

    python -m r2rank_jax.analyses.history_length --workdir DIR [--tiers 3 | --edges 5,10] [--methods a,b]

Writes WORKDIR/analyses/history_length.{md,json,png}.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from r2rank_jax.analyses import stratified
from r2rank_jax.data.benchmark import Record

WHAT = "Users bucketed by the number of items in their history."


def history_lengths(records: Sequence[Record], train: Sequence[Record] = ()) -> np.ndarray:
    return np.array([len(r.history) for r in records], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    stratified.run(argv, "history_length", __doc__, "History-length strata", WHAT, "history length",
                   history_lengths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
