"""Seeded negative sampling by rejection: K-1 distinct items outside the user's full history."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

STRATEGIES: tuple[str, ...] = ("uniform", "popularity")


class NegativeSampler:
    """Draws negatives from a fixed item pool, uniformly or proportionally to ``weights``.

    Args:
      pool: candidate item ids, shape (P,), in canonical order (the order matters for reproducibility).
      weights: optional non-negative weights, shape (P,), e.g. interaction counts; None = uniform.
    """

    def __init__(self, pool: Sequence[str], weights: np.ndarray | None = None):
        self.pool = list(pool)
        self.index = {item: i for i, item in enumerate(self.pool)}
        self._blocked = np.zeros(len(self.pool), dtype=bool)
        self._cdf = None
        self._drawable = np.ones(len(self.pool), dtype=bool)  # items with a positive probability
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(self.pool),) or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError("weights must be non-negative, one per pool item, with a positive sum")
            self._cdf = np.cumsum(weights) / weights.sum()
            self._drawable = weights > 0
            self._blocked |= ~self._drawable
        self._num_drawable = int(self._drawable.sum())

    def _draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, len(self.pool), size=m)
        # Inverse-CDF sampling: O(m log P) per call instead of rng.choice's O(P).
        return np.minimum(np.searchsorted(self._cdf, rng.random(m), side="right"), len(self.pool) - 1)

    def sample(self, rng: np.random.Generator, exclude: Iterable[str], k: int, who: str = "") -> list[str]:
        """``k`` distinct pool items not in ``exclude``, in draw order. Raises ValueError if impossible."""
        excluded = np.fromiter((self.index[i] for i in set(exclude) if i in self.index), dtype=np.int64)
        excluded = excluded[self._drawable[excluded]]  # zero-weight items stay blocked permanently
        available = self._num_drawable - len(excluded)
        if available < k:
            raise ValueError(f"cannot draw {k} negatives{' for ' + who if who else ''}: only {available} items "
                             f"outside the user's history (pool of {len(self.pool)})")
        chosen: list[int] = []
        self._blocked[excluded] = True
        try:
            m = max(2 * k, int(np.ceil(1.5 * k * len(self.pool) / max(available, 1))) + 8)
            while len(chosen) < k:
                draws = self._draw(rng, m)
                for j in draws[~self._blocked[draws]].tolist():
                    if not self._blocked[j]:
                        self._blocked[j] = True
                        chosen.append(j)
                        if len(chosen) == k:
                            break
        finally:
            self._blocked[excluded] = False
            self._blocked[chosen] = False
        return [self.pool[j] for j in chosen]
