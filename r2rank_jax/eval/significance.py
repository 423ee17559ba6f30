"""Paired two-sided Wilcoxon signed-rank tests between methods on the same users.

`scipy.stats.wilcoxon` with its defaults (zero_method="wilcox": users where both methods score the
same are dropped; exact distribution for small samples without ties, normal approximation
otherwise). When every difference is zero the methods are indistinguishable on these users and the
p-value is 1.0 (scipy would fail or return NaN). Markers follow the paper: † p < 0.05, ‡ p < 0.01,
§ p < 0.001.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

TEST_NAME = "paired two-sided Wilcoxon signed-rank (scipy.stats.wilcoxon, zero_method='wilcox')"
MARKERS: tuple[tuple[float, str], ...] = ((0.001, "§"), (0.01, "‡"), (0.05, "†"))


def wilcoxon_p(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Two-sided p-value of the paired signed-rank test of a `[N]` vs b `[N]` (same users, same order)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two [N] arrays of the same users, got shapes {a.shape} and {b.shape}")
    diff = a - b
    if not np.any(diff != 0):
        return 1.0
    return float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)


def marker(p_value: float) -> str:
    """'§' for p < 0.001, '‡' for p < 0.01, '†' for p < 0.05, '' otherwise."""
    for threshold, sign in MARKERS:
        if p_value < threshold:
            return sign
    return ""


def compare_to_reference(
    per_user: Mapping[str, Mapping[str, np.ndarray]], reference: str, metrics: Sequence[str]
) -> dict[str, dict[str, dict[str, float | str]]]:
    """method -> metric -> {"p_value", "marker", "mean_diff"} (method minus reference), for every
    method other than `reference`. per_user: method -> metric -> `[N]` values on the same users."""
    if reference not in per_user:
        raise ValueError(f"reference method {reference!r} not among {sorted(per_user)}")
    ref = per_user[reference]
    out: dict[str, dict[str, dict[str, float | str]]] = {}
    for name, values in per_user.items():
        if name == reference:
            continue
        out[name] = {}
        for metric in metrics:
            p = wilcoxon_p(values[metric], ref[metric])
            out[name][metric] = {
                "p_value": p,
                "marker": marker(p),
                "mean_diff": float(np.mean(values[metric]) - np.mean(ref[metric])),
            }
    return out
