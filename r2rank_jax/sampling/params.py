"""Sampling parameters as traced per-row arrays, so changing them between calls does not recompile."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class SamplingParams:
    """Per-row sampling controls, all `[B]`.

    temperature: float32; 0 means greedy (argmax).
    top_p: float32 in (0, 1]; 1 disables nucleus truncation.
    top_k: int32 >= 0; 0 disables top-k truncation (values above the sampler's `num_candidates` are
        clamped to it, see filters.py).
    Order of application (as in transformers): temperature, then top-k, then top-p.
    """

    temperature: jax.Array
    top_p: jax.Array
    top_k: jax.Array

    @classmethod
    def make(cls, batch: int, temperature=1.0, top_p=1.0, top_k=0) -> "SamplingParams":
        """Validated params broadcast to `[batch]` (scalars or per-row sequences)."""
        t = np.broadcast_to(np.asarray(temperature, np.float32), (batch,))
        p = np.broadcast_to(np.asarray(top_p, np.float32), (batch,))
        k = np.broadcast_to(np.asarray(top_k, np.int32), (batch,))
        if np.any(t < 0) or not np.all(np.isfinite(t)):
            raise ValueError(f"temperature must be finite and >= 0 (0 = greedy), got {temperature!r}")
        if np.any(p <= 0) or np.any(p > 1):
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        if np.any(k < 0):
            raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k!r}")
        return cls(temperature=jnp.asarray(t), top_p=jnp.asarray(p), top_k=jnp.asarray(k))

    @classmethod
    def greedy(cls, batch: int) -> "SamplingParams":
        return cls.make(batch, temperature=0.0)

    @property
    def batch(self) -> int:
        return self.temperature.shape[0]

    def check_batch(self, batch: int) -> None:
        if self.temperature.shape != (batch,) or self.top_p.shape != (batch,) or self.top_k.shape != (batch,):
            raise ValueError(f"sampling params have shapes {self.temperature.shape}/{self.top_p.shape}/"
                             f"{self.top_k.shape}, expected ({batch},) each: use SamplingParams.make({batch}, ...)")
