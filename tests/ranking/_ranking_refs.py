"""Brute-force references in plain Python (lists, floats, `math`), independent of the code under test."""
from __future__ import annotations

import math
from collections.abc import Sequence


def real_order(perm: Sequence[int], mask: Sequence[bool] | None) -> list[int]:
    """The candidates of `perm` that are real, in perm order."""
    return [int(c) for c in perm if mask is None or mask[c]]


def pl_probability(scores: Sequence[float], perm: Sequence[int], mask: Sequence[bool] | None = None) -> float:
    """prod_k exp(s_tau(k)) / sum_{j >= k} exp(s_tau(j)) over the real candidates, as a product."""
    order = real_order(perm, mask)
    prob = 1.0
    for k, chosen in enumerate(order):
        remaining = order[k:]
        prob *= math.exp(scores[chosen]) / sum(math.exp(scores[j]) for j in remaining)
    return prob


def rank_by_scores(scores: Sequence[float], mask: Sequence[bool] | None = None) -> list[int]:
    """Descending score, ties by lower index, masked candidates last."""
    return sorted(range(len(scores)), key=lambda i: (mask is not None and not mask[i], -scores[i], i))


def dcg(perm: Sequence[int], rel: Sequence[float], k: int, mask: Sequence[bool] | None = None) -> float:
    order = real_order(perm, mask)[:k]
    return sum((2.0 ** rel[c] - 1.0) / math.log2(rank + 1) for rank, c in enumerate(order, start=1))


def ndcg(perm: Sequence[int], rel: Sequence[float], k: int, mask: Sequence[bool] | None = None) -> float:
    real = [c for c in range(len(rel)) if mask is None or mask[c]]
    ideal = sorted(real, key=lambda c: -rel[c])
    best = dcg(ideal, rel, k)
    return dcg(perm, rel, k, mask) / best if best > 0 else 0.0


def hit_rate(perm: Sequence[int], rel: Sequence[float], k: int, mask: Sequence[bool] | None = None) -> float:
    return float(any(rel[c] > 0 for c in real_order(perm, mask)[:k]))


def reciprocal_rank(
    perm: Sequence[int], rel: Sequence[float], k: int | None = None, mask: Sequence[bool] | None = None
) -> float:
    order = real_order(perm, mask)
    for rank, c in enumerate(order, start=1):
        if k is not None and rank > k:
            break
        if rel[c] > 0:
            return 1.0 / rank
    return 0.0
