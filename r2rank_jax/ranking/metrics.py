"""Ranking metrics: DCG/NDCG@k (graded gain), HR@k and MRR, in NumPy and in JAX.

Plain names (`ndcg_at_k`, ...) are NumPy, for evaluation (float64). `*_jax` names are jittable JAX,
for rewards (float32 unless jax_enable_x64; k is a Python int). Both share one implementation
and agree to float32 precision.

Inputs, for one ranking or a batch with any leading dims:
  perm       `[..., K]` int, perm[..., i] = candidate index at rank i (0-based), best first.
  scores     `[..., K]` float, for the `*_from_scores` helpers: ranked by descending score, ties by
             lower index (the same ranking as `plackett_luce.argsort_ranking`).
  relevance  `[..., K]` non-negative grades (int, float or bool) indexed by *candidate*, not by rank.
             For one positive per row use `one_hot_relevance`.
  mask       optional `[..., K]` bool, True = real candidate. Padding is dropped from the ranking
             wherever it appears; the real candidates keep their relative order.
Results are `[...]`. Gain at 1-based rank r is (2^rel - 1) / log2(r + 1); NDCG is 0 (not NaN) for a
row with no relevant candidate. All shapes must match exactly (no implicit broadcasting).
"""
from __future__ import annotations

import math
from functools import partial
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from r2rank_jax.ranking import _checks
from r2rank_jax.ranking import _metrics_core as core
from r2rank_jax.ranking import plackett_luce

__all__ = [
    "dcg_at_k", "ndcg_at_k", "hit_rate_at_k", "mrr",
    "ndcg_at_k_from_scores", "hit_rate_at_k_from_scores", "mrr_from_scores",
    "rank_by_scores", "one_hot_relevance",
    "dcg_at_k_jax", "ndcg_at_k_jax", "hit_rate_at_k_jax", "mrr_jax",
    "ndcg_at_k_from_scores_jax", "hit_rate_at_k_from_scores_jax", "mrr_from_scores_jax",
    "one_hot_relevance_jax", "expected_random_ndcg",
]


def _prepare(
    xp: ModuleType, perm: Any, relevance: Any, mask: Any | None
) -> tuple[Any, Any, Any | None]:
    _checks.check_has_candidate_axis("perm", perm)
    _checks.check_integer("perm", perm)
    _checks.check_same_shape("perm", perm, "relevance", relevance)
    if mask is not None:
        _checks.check_bool("mask", mask)
        _checks.check_same_shape("perm", perm, "mask", mask)
        mask = xp.asarray(mask)
    return xp.asarray(perm), xp.asarray(relevance), mask


def _optional_cutoff(k: int | None) -> None:
    if k is not None:
        _checks.check_cutoff(k)


# ----------------------------------------------------------------------------------------- NumPy


def rank_by_scores(scores: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> np.ndarray:
    """NumPy twin of `plackett_luce.argsort_ranking`: `[..., K]` perm, descending, ties by index."""
    scores = np.asarray(scores)
    _checks.check_has_candidate_axis("scores", scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)  # negating unsigned ints would wrap around
    masked_last = np.zeros(scores.shape, dtype=np.int8)
    if mask is not None:
        _checks.check_bool("mask", mask)
        _checks.check_same_shape("scores", scores, "mask", mask)
        masked_last = np.logical_not(mask).astype(np.int8)
    # np.lexsort is stable and sorts by its last key first.
    return np.lexsort((-scores, masked_last), axis=-1).astype(np.int32)


def dcg_at_k(
    perm: npt.ArrayLike, relevance: npt.ArrayLike, k: int, mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """DCG@k `[...]` (NumPy)."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare(np, perm, relevance, mask)
    return core.dcg(np, perm, relevance, k, mask)


def ndcg_at_k(
    perm: npt.ArrayLike, relevance: npt.ArrayLike, k: int, mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """NDCG@k `[...]` (NumPy)."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare(np, perm, relevance, mask)
    return core.ndcg(np, perm, relevance, k, mask)


def hit_rate_at_k(
    perm: npt.ArrayLike, relevance: npt.ArrayLike, k: int, mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """HR@k `[...]` (NumPy): 1.0 if a relevant candidate is in the top k."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare(np, perm, relevance, mask)
    return core.hit_rate(np, perm, relevance, k, mask)


def mrr(
    perm: npt.ArrayLike,
    relevance: npt.ArrayLike,
    k: int | None = None,
    mask: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Reciprocal rank of the first relevant candidate `[...]` (NumPy); average it for MRR.

    0.0 when nothing relevant is ranked (within the top k if k is given).
    """
    _optional_cutoff(k)
    perm, relevance, mask = _prepare(np, perm, relevance, mask)
    return core.reciprocal_rank(np, perm, relevance, k, mask)


def ndcg_at_k_from_scores(
    scores: npt.ArrayLike, relevance: npt.ArrayLike, k: int, mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """NDCG@k `[...]` of the descending-score ranking (NumPy)."""
    return ndcg_at_k(rank_by_scores(scores, mask), relevance, k, mask)


def hit_rate_at_k_from_scores(
    scores: npt.ArrayLike, relevance: npt.ArrayLike, k: int, mask: npt.ArrayLike | None = None
) -> np.ndarray:
    """HR@k `[...]` of the descending-score ranking (NumPy)."""
    return hit_rate_at_k(rank_by_scores(scores, mask), relevance, k, mask)


def mrr_from_scores(
    scores: npt.ArrayLike,
    relevance: npt.ArrayLike,
    k: int | None = None,
    mask: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Reciprocal rank `[...]` of the descending-score ranking (NumPy)."""
    return mrr(rank_by_scores(scores, mask), relevance, k, mask)


def one_hot_relevance(positive: npt.ArrayLike, num_candidates: int) -> np.ndarray:
    """`[..., K]` int32 relevance with a single 1 at candidate `positive[...]` (NumPy).

    An out-of-range index gives an all-zero row (NDCG 0).
    """
    positive = np.asarray(positive)
    return (positive[..., None] == np.arange(num_candidates)).astype(np.int32)


# ------------------------------------------------------------------------------------------- JAX

# Jitted once per input shape. The cutoff k only enters through comparisons, so it is traced rather
# than static: all cutoffs share one compilation. Under an outer jit these inline.
_dcg_jit = jax.jit(partial(core.dcg, jnp))
_ndcg_jit = jax.jit(partial(core.ndcg, jnp))
_hit_rate_jit = jax.jit(partial(core.hit_rate, jnp))
_reciprocal_rank_jit = jax.jit(partial(core.reciprocal_rank, jnp))


def _prepare_jax(perm: Any, relevance: Any, mask: Any | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    perm, relevance, mask = _prepare(jnp, perm, relevance, mask)
    # An explicit all-True mask keeps one compiled signature for masked and unmasked calls.
    return perm, relevance, jnp.ones(perm.shape, dtype=bool) if mask is None else mask


def dcg_at_k_jax(
    perm: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """DCG@k `[...]` (JAX, jittable)."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare_jax(perm, relevance, mask)
    return _dcg_jit(perm, relevance, k, mask)


def ndcg_at_k_jax(
    perm: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """NDCG@k `[...]` (JAX, jittable): the RL reward rho(tau) with k=10."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare_jax(perm, relevance, mask)
    return _ndcg_jit(perm, relevance, k, mask)


def hit_rate_at_k_jax(
    perm: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """HR@k `[...]` (JAX, jittable)."""
    _checks.check_cutoff(k)
    perm, relevance, mask = _prepare_jax(perm, relevance, mask)
    return _hit_rate_jit(perm, relevance, k, mask)


def mrr_jax(
    perm: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int | None = None,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Reciprocal rank of the first relevant candidate `[...]` (JAX, jittable)."""
    _optional_cutoff(k)
    perm, relevance, mask = _prepare_jax(perm, relevance, mask)
    return _reciprocal_rank_jit(perm, relevance, k, mask)


def ndcg_at_k_from_scores_jax(
    scores: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """NDCG@k `[...]` of the descending-score ranking (JAX, jittable)."""
    return ndcg_at_k_jax(plackett_luce.argsort_ranking(scores, mask), relevance, k, mask)


def hit_rate_at_k_from_scores_jax(
    scores: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """HR@k `[...]` of the descending-score ranking (JAX, jittable)."""
    return hit_rate_at_k_jax(plackett_luce.argsort_ranking(scores, mask), relevance, k, mask)


def mrr_from_scores_jax(
    scores: jax.typing.ArrayLike,
    relevance: jax.typing.ArrayLike,
    k: int | None = None,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Reciprocal rank `[...]` of the descending-score ranking (JAX, jittable)."""
    return mrr_jax(plackett_luce.argsort_ranking(scores, mask), relevance, k, mask)


def one_hot_relevance_jax(positive: jax.typing.ArrayLike, num_candidates: int) -> jax.Array:
    """`[..., K]` int32 relevance with a single 1 at candidate `positive[...]` (JAX)."""
    positive = jnp.asarray(positive)
    return (positive[..., None] == jnp.arange(num_candidates)).astype(jnp.int32)


# ------------------------------------------------------------------------------------ closed form


def expected_random_ndcg(k: int, num_candidates: int) -> float:
    """E[NDCG@k] of a uniformly random ranking of K candidates with exactly one positive.

    The positive lands at each 1-based rank r with probability 1/K and then scores 1/log2(r + 1), so
    E = (1/K) * sum_{r=1}^{min(k, K)} 1/log2(r + 1). K=20: k=1/5/10 -> 0.050/0.147/0.227.
    """
    _checks.check_cutoff(k)
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)):
        raise TypeError(f"num_candidates must be an int; got {type(num_candidates).__name__}")
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be an int >= 1; got {num_candidates!r}")
    depth = min(int(k), int(num_candidates))
    return math.fsum(1.0 / math.log2(r + 1) for r in range(1, depth + 1)) / num_candidates
