"""Popularity baseline: a candidate's score is its number of interactions in the train split
(train users' histories and positives). Equal counts are ties (evaluated at their expected value).

    python -m r2rank_jax.baselines.popularity --benchmark DIR --out PATH.jsonl [--split test]
"""
from __future__ import annotations

import sys

import numpy as np

from r2rank_jax.baselines import common
from r2rank_jax.data.benchmark import Record


def popularity_scores(train: list[Record], evaluated: list[Record], index: common.ItemIndex) -> np.ndarray:
    """`[N, K]` train interaction counts of each evaluated user's candidates."""
    counts = common.item_counts(common.train_sequences(train, index), index.num_items)
    return counts[common.candidate_matrix(evaluated, index)].astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser("popularity", __doc__).parse_args(argv)
    common.run("popularity", args, popularity_scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
