"""Per-user metrics of score arrays or score files against a benchmark split."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from r2rank_jax.data.benchmark import Record
from r2rank_jax.eval.per_user import TiePolicy, per_user_metrics, tie_summary
from r2rank_jax.eval.score_files import align_scores, positive_indices, read_score_file


def evaluate_scores(records: Sequence[Record], scores: np.ndarray, mask: np.ndarray | None = None,
                    ties: TiePolicy = "expected") -> dict[str, np.ndarray]:
    """metric -> `[N]` for scores `[N, K]` aligned with `records` (row i = records[i].candidates)."""
    return per_user_metrics(scores, positive_indices(records), mask=mask, ties=ties)


def mean_metrics(records: Sequence[Record], scores: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """metric -> mean over users (expected-value ties)."""
    return {m: float(v.mean()) for m, v in evaluate_scores(records, scores, mask).items()}


def evaluate_score_files(
    paths: Mapping[str, str | os.PathLike[str]], records: Sequence[Record], split: str = "the split"
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]]]:
    """method -> metric -> `[N]` (in `records` order), and method -> tie counts."""
    per_user: dict[str, dict[str, np.ndarray]] = {}
    ties: dict[str, dict[str, int]] = {}
    positives = positive_indices(records)
    for name, path in paths.items():
        scores, mask = align_scores(read_score_file(path), records, split)
        per_user[name] = per_user_metrics(scores, positives, mask=mask)
        ties[name] = tie_summary(scores, positives, mask=mask)
    return per_user, ties
