"""Static shape and dtype checks shared by the ranking modules.

They only read `.shape` and `.dtype`, so they work on NumPy arrays, JAX arrays and tracers alike, and
run once at trace time under jit.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def check_has_candidate_axis(name: str, x: Any) -> None:
    """`x` must be `[..., K]` with K >= 1."""
    if np.ndim(x) < 1:
        raise ValueError(f"{name} must have a trailing candidate axis [..., K]; got a scalar")
    if np.shape(x)[-1] < 1:
        raise ValueError(f"{name} has an empty candidate axis: shape {np.shape(x)}")


def check_same_shape(ref_name: str, ref: Any, name: str, x: Any) -> None:
    """`x` must have exactly the shape of `ref` (no implicit broadcasting of leading dims)."""
    if np.shape(x) != np.shape(ref):
        raise ValueError(
            f"{name} shape {np.shape(x)} differs from {ref_name} shape {np.shape(ref)}; "
            "both are [..., K] over the same candidates (broadcast explicitly or vmap if you meant to)"
        )


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def check_integer(name: str, x: Any) -> None:
    """`x` must hold integer indices."""
    dtype = _dtype(x)
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{name} must be an integer array of candidate indices; got dtype {dtype}")


def check_bool(name: str, x: Any) -> None:
    """`x` must be a boolean array."""
    dtype = _dtype(x)
    if dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array (True = real candidate); got dtype {dtype}")


def check_cutoff(k: Any) -> None:
    """A rank cutoff must be a Python/NumPy integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"cutoff k must be an int; got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"cutoff k must be >= 1; got {k}")
