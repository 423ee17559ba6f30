"""Per-user ranking metrics from scores, with an explicit policy for tied scores.

Metrics: NDCG@1/5/10, HR@1/5/10 and MRR (`METRICS`), one value per user.

Ties. A scorer that gives several candidates the same score (popularity counts, a constant or a
saturated model) does not define a ranking. Two policies:

- ``"expected"`` (the default for every report): the expected metric over a uniformly random
  order within each group of tied candidates. It is exact and closed form: a candidate in a tie
  group that starts at 0-based position s and holds m candidates is at each of s..s+m-1 with
  probability 1/m. So a constant scorer gets exactly the random expectation (NDCG@10 = 0.227 for
  K = 20, one positive) instead of whatever the candidate order happens to give.
- ``"stable"``: the deterministic ranking of `metrics.rank_by_scores` (descending score, ties by
  lower candidate index), the ranking the RL reward and `plackett_luce.argsort_ranking` use.

With several relevant candidates NDCG is exact under ``"expected"`` (DCG is linear in the
positions); HR@k and MRR use the first tie group holding a relevant candidate (hypergeometric).
`tie_summary` reports how many users have ties at all and how many have a tied relevant candidate.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import comb

from r2rank_jax.ranking import metrics as rk

CUTOFFS: tuple[int, ...] = (1, 5, 10)
METRICS: tuple[str, ...] = tuple(f"ndcg@{k}" for k in CUTOFFS) + tuple(f"hr@{k}" for k in CUTOFFS) + ("mrr",)
TiePolicy = Literal["expected", "stable"]


def _as_inputs(
    scores: npt.ArrayLike,
    positive_index: npt.ArrayLike | None,
    relevance: npt.ArrayLike | None,
    mask: npt.ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, K], got shape {scores.shape}")
    if (positive_index is None) == (relevance is None):
        raise ValueError("give exactly one of positive_index [N] or relevance [N, K]")
    if relevance is None:
        positive_index = np.asarray(positive_index)
        if positive_index.shape != scores.shape[:1] or not np.issubdtype(positive_index.dtype, np.integer):
            raise ValueError(f"positive_index must be int [N={scores.shape[0]}], got {positive_index.dtype} {positive_index.shape}")
        bad = np.flatnonzero((positive_index < 0) | (positive_index >= scores.shape[1]))
        if bad.size:
            raise ValueError(f"row {bad[0]}: positive_index {positive_index[bad[0]]} outside [0, {scores.shape[1]})")
        relevance = rk.one_hot_relevance(positive_index, scores.shape[1])
    relevance = np.asarray(relevance, dtype=np.float64)
    if relevance.shape != scores.shape:
        raise ValueError(f"relevance shape {relevance.shape} != scores shape {scores.shape}")
    mask = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask)
    if mask.dtype != bool or mask.shape != scores.shape:
        raise ValueError(f"mask must be bool {scores.shape}, got {mask.dtype} {mask.shape}")
    nonfinite = np.argwhere(~np.isfinite(scores) & mask)
    if nonfinite.size:
        row, col = nonfinite[0]
        raise ValueError(f"row {row}, candidate {col}: score {scores[row, col]} is not finite")
    return scores, np.where(mask, relevance, 0.0), mask


def tie_groups(scores: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each real candidate: `start` = #real candidates scored strictly higher, `size` = #real
    candidates with an equal score (itself included). Both `[N, K]` int; 0 for padding."""
    real_j = mask[:, None, :]
    higher = (scores[:, None, :] > scores[:, :, None]) & real_j
    equal = (scores[:, None, :] == scores[:, :, None]) & real_j
    start = np.where(mask, higher.sum(-1), 0)
    size = np.where(mask, equal.sum(-1), 0)
    return start, size


def _expected_ndcg(relevance: np.ndarray, start: np.ndarray, size: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    num_candidates = relevance.shape[1]
    positions = np.arange(num_candidates)
    discount = np.where(positions < k, 1.0 / np.log2(positions + 2.0), 0.0)
    prefix = np.concatenate([[0.0], np.cumsum(discount)])  # prefix[p] = sum of discounts of positions < p
    mean_discount = (prefix[start + size] - prefix[start]) / np.maximum(size, 1)
    dcg = np.sum(np.where(mask, (np.exp2(relevance) - 1.0) * mean_discount, 0.0), axis=-1)
    ideal = rk.dcg_at_k(np.argsort(-relevance, axis=-1, kind="stable"), relevance, k)
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)


def _first_relevant_group(relevance: np.ndarray, start: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per user: start s and size m of the highest tie group with a relevant candidate, the number r
    of relevant candidates in it, and whether there is any relevant candidate. All `[N]`."""
    relevant = relevance > 0
    big = relevance.shape[1] + 1
    s = np.min(np.where(relevant, start, big), axis=-1)
    has = s < big
    in_group = relevant & (start == s[:, None])
    m = np.max(np.where(in_group, size, 0), axis=-1)
    r = in_group.sum(-1)
    return np.where(has, s, 0), np.maximum(m, 1), np.maximum(r, 1), has


def _expected_hit(s: np.ndarray, m: np.ndarray, r: np.ndarray, has: np.ndarray, k: int) -> np.ndarray:
    slots = np.clip(k - s, 0, m)  # how many positions of the group fall in the top k
    p_miss = comb(m - r, slots) / comb(m, slots)  # no relevant one among the first `slots` of the group
    return np.where(has, 1.0 - p_miss, 0.0)


def _expected_reciprocal_rank(s: np.ndarray, m: np.ndarray, r: np.ndarray, has: np.ndarray) -> np.ndarray:
    # j = number of non-relevant group members ahead of the first relevant one: P(j) = C(m-1-j, r-1) / C(m, r).
    j = np.arange(int(m.max()))[None, :]
    p = comb(m[:, None] - 1 - j, r[:, None] - 1) / comb(m, r)[:, None]
    p = np.where(j <= (m - r)[:, None], p, 0.0)
    return np.where(has, np.sum(p / (s[:, None] + 1.0 + j), axis=-1), 0.0)


def per_user_metrics(
    scores: npt.ArrayLike,
    positive_index: npt.ArrayLike | None = None,
    *,
    relevance: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    ties: TiePolicy = "expected",
) -> dict[str, np.ndarray]:
    """`METRICS` name -> `[N]` float64 values, one per user.

    scores `[N, K]` (higher = better); either positive_index `[N]` (one positive per user) or
    relevance `[N, K]` (non-negative grades); mask `[N, K]` bool, True = real candidate.
    """
    scores, relevance, mask = _as_inputs(scores, positive_index, relevance, mask)
    if ties == "stable":
        perm = rk.rank_by_scores(scores, mask)
        out = {f"ndcg@{k}": rk.ndcg_at_k(perm, relevance, k, mask) for k in CUTOFFS}
        out |= {f"hr@{k}": rk.hit_rate_at_k(perm, relevance, k, mask) for k in CUTOFFS}
        out["mrr"] = rk.mrr(perm, relevance, None, mask)
        return out
    if ties != "expected":
        raise ValueError(f"ties must be 'expected' or 'stable', got {ties!r}")
    start, size = tie_groups(scores, mask)
    out = {f"ndcg@{k}": _expected_ndcg(relevance, start, size, mask, k) for k in CUTOFFS}
    s, m, r, has = _first_relevant_group(relevance, start, size)
    out |= {f"hr@{k}": _expected_hit(s, m, r, has, k) for k in CUTOFFS}
    out["mrr"] = _expected_reciprocal_rank(s, m, r, has)
    return out


def tie_summary(
    scores: npt.ArrayLike,
    positive_index: npt.ArrayLike | None = None,
    *,
    relevance: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
) -> dict[str, int]:
    """How many users have any tied real candidates, and how many have a relevant candidate tied."""
    scores, relevance, mask = _as_inputs(scores, positive_index, relevance, mask)
    _, size = tie_groups(scores, mask)
    tied = (size > 1) & mask
    return {
        "users_with_ties": int(np.any(tied, axis=-1).sum()),
        "users_with_tied_positive": int(np.any(tied & (relevance > 0), axis=-1).sum()),
    }
