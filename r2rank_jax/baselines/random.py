"""Random baseline: i.i.d. uniform scores from a seeded generator (no ties with probability 1).

    python -m r2rank_jax.baselines.random --benchmark DIR --out PATH.jsonl [--split test] [--seed 0]
"""
from __future__ import annotations

import sys

import numpy as np

from r2rank_jax.baselines import common
from r2rank_jax.data.benchmark import Record


def random_scores(records: list[Record], seed: int = 0) -> np.ndarray:
    """`[N, K]` uniform scores; the same seed and records give the same scores."""
    width = max(len(r.candidates) for r in records)
    return np.random.default_rng(seed).random((len(records), width))


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser("random", __doc__).parse_args(argv)
    common.run("random", args, lambda train, evaluated, index: random_scores(evaluated, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
