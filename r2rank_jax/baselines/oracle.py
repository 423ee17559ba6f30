"""The synthetic world's ceiling, shown in results tables as ``oracle``: each candidate scored by the
world's own attribute match with the user's history (`r2rank_jax.data.synthetic.attribute_match_scores`,
the taste weights the world drew the users with). It is not a method: it reads the items' hidden
attribute columns, which no model sees. Only a synthetic-world benchmark has them (a clear error
otherwise).

    python -m r2rank_jax.baselines.oracle --benchmark DIR --out PATH.jsonl [--split test]
"""
from __future__ import annotations

import sys

import numpy as np

from r2rank_jax.baselines import common
from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.synthetic import attribute_match_scores, load_item_attributes


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser("oracle", __doc__).parse_args(argv)
    attributes = load_item_attributes(args.benchmark)

    def scores(train: list[Record], evaluated: list[Record], index: common.ItemIndex) -> np.ndarray:
        return np.stack([attribute_match_scores(attributes, r.history, r.candidates) for r in evaluated])

    common.run("oracle", args, scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
