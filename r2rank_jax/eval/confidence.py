"""95% confidence intervals for a mean over users.

Reports use the seeded percentile bootstrap over users (`bootstrap_ci`): resample the N users with
replacement B times, take the mean of each resample, report the (alpha/2, 1 - alpha/2) quantiles.
All metrics (and all methods) share the same resamples, so their intervals are computed on the same
bootstrap worlds. `normal_ci` (mean +- z * sample sd / sqrt(N)) is the closed-form alternative.
"""
from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

DEFAULT_RESAMPLES = 10_000
DEFAULT_LEVEL = 0.95


def bootstrap_means(values: npt.ArrayLike, num_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    chunk: int = 500) -> np.ndarray:
    """Means of `num_resamples` user resamples: values `[N]` or `[N, M]` -> `[B]` or `[B, M]`.

    A resample is a count vector over users (bincount of N draws), so every column is averaged with
    one `[chunk, N] @ [N, M]` product instead of gathering `[chunk, N, M]`.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    n = flat.shape[0]
    if n == 0:
        raise ValueError("no users to bootstrap over")
    rng = np.random.default_rng(seed)
    out = np.empty((num_resamples, flat.shape[1]))
    for lo in range(0, num_resamples, chunk):
        b = min(chunk, num_resamples - lo)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        out[lo:lo + b] = counts @ flat / n
    return out.reshape((num_resamples,) + values.shape[1:])


def bootstrap_ci(values: npt.ArrayLike, level: float = DEFAULT_LEVEL, num_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> np.ndarray:
    """Percentile-bootstrap interval of the mean: `[N]` -> `[2]`, `[N, M]` -> `[2, M]` (lo, hi)."""
    _check_level(level)
    means = bootstrap_means(values, num_resamples, seed)
    alpha = 1.0 - level
    return np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)


def normal_ci(values: npt.ArrayLike, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Normal-approximation interval mean +- z_{1-alpha/2} * sd / sqrt(N) (sd with ddof=1): `[N, ...]` -> `[2, ...]`."""
    _check_level(level)
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 users for a normal interval, got {n}")
    mean = values.mean(axis=0)
    half = stats.norm.ppf(0.5 + level / 2) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return np.stack([mean - half, mean + half])


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
