"""Ranking-metric math written once against an array namespace `xp` (numpy or jax.numpy).

Sharing one implementation keeps the JAX rewards and the NumPy evaluation numbers from drifting
apart. Positions are 0-based here; the gain at 0-based position p is (2^r - 1) / log2(p + 2), i.e.
log2(rank + 1) with 1-based rank.

When a mask is given, masked (padding) candidates are dropped from the ranking wherever the perm
puts them: a real candidate's position is the number of real candidates ranked before it.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

Array = Any  # np.ndarray or jax.Array, depending on xp


def _float_dtype(xp: ModuleType) -> Any:
    # float64 for NumPy; float32 for jax.numpy unless jax_enable_x64 is on.
    return xp.result_type(float)


def ranked_view(
    xp: ModuleType, perm: Array, relevance: Array, mask: Array | None
) -> tuple[Array, Array, Array]:
    """Relevance, validity and 0-based position of each rank slot, all `[..., K]` in rank order."""
    rel = xp.take_along_axis(relevance, perm, axis=-1).astype(_float_dtype(xp))
    if mask is None:
        valid = xp.ones(perm.shape, dtype=bool)
    else:
        valid = xp.take_along_axis(mask, perm, axis=-1)
    # Clipped at 0 so that padding slots ahead of every real candidate (cumsum 0) don't divide by
    # zero in the discounts; those slots are dropped through `valid` anyway.
    position = xp.maximum(xp.cumsum(valid.astype(xp.int32), axis=-1) - 1, 0)
    return rel, valid, position


def _dcg_from_view(xp: ModuleType, rel: Array, valid: Array, position: Array, k: int) -> Array:
    keep = valid & (position < k)
    discount = 1.0 / xp.log2(position.astype(rel.dtype) + 2.0)
    gain = (xp.exp2(rel) - 1.0) * discount
    return xp.sum(xp.where(keep, gain, 0.0), axis=-1)


def dcg(xp: ModuleType, perm: Array, relevance: Array, k: int, mask: Array | None) -> Array:
    """DCG@k `[...]` of `perm` given per-candidate relevance."""
    return _dcg_from_view(xp, *ranked_view(xp, perm, relevance, mask), k)


def ideal_dcg(xp: ModuleType, relevance: Array, k: int, mask: Array | None) -> Array:
    """DCG@k `[...]` of the best possible ranking of the real candidates."""
    rel = relevance.astype(_float_dtype(xp))
    if mask is not None:
        # Padding gets relevance 0 (gain 0), so it can only sit behind the real non-negative grades.
        rel = xp.where(mask, rel, 0.0)
    best_first = -xp.sort(-rel, axis=-1)
    position = xp.broadcast_to(xp.arange(rel.shape[-1]), rel.shape)
    return _dcg_from_view(xp, best_first, xp.ones(rel.shape, dtype=bool), position, k)


def ndcg(xp: ModuleType, perm: Array, relevance: Array, k: int, mask: Array | None) -> Array:
    """NDCG@k `[...]`; 0 (not NaN) where there is nothing relevant."""
    actual = dcg(xp, perm, relevance, k, mask)
    best = ideal_dcg(xp, relevance, k, mask)
    has_gain = best > 0
    return xp.where(has_gain, actual / xp.where(has_gain, best, 1.0), 0.0)


def hit_rate(xp: ModuleType, perm: Array, relevance: Array, k: int, mask: Array | None) -> Array:
    """HR@k `[...]`: 1.0 if any relevant (relevance > 0) candidate is in the top k, else 0.0."""
    rel, valid, position = ranked_view(xp, perm, relevance, mask)
    hit = valid & (position < k) & (rel > 0)
    return xp.any(hit, axis=-1).astype(rel.dtype)


def reciprocal_rank(
    xp: ModuleType, perm: Array, relevance: Array, k: int | None, mask: Array | None
) -> Array:
    """1 / (1-based rank of the first relevant candidate) `[...]`, 0.0 if none (within the top k)."""
    rel, valid, position = ranked_view(xp, perm, relevance, mask)
    found = valid & (rel > 0)
    if k is not None:
        found = found & (position < k)
    # The first relevant slot has the largest reciprocal rank, so a max finds it without a search.
    rr = xp.where(found, 1.0 / (position.astype(rel.dtype) + 1.0), 0.0)
    return xp.max(rr, axis=-1)
