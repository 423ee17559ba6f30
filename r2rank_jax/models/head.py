"""Scoring head f_φ: hidden state at the decision point → scalar score.

It is a separate module (its own parameter collection), so the head and the LLM get their own
optimizers and the head's gradient can be stopped at the hidden state (Algorithm 1 of the paper).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ScoringHead(nnx.Module):
    """MLP `[D] → [hidden] → [1]` with GELU, computed in float32."""

    def __init__(self, hidden_size: int, head_hidden: int = 256, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        init = nnx.initializers.lecun_normal()
        self.w1 = nnx.Param(init(rngs.params(), (hidden_size, head_hidden), param_dtype))
        self.b1 = nnx.Param(jnp.zeros((head_hidden,), param_dtype))
        # A zero output layer starts every score at 0: the initial ranking policy is uniform.
        self.w2 = nnx.Param(jnp.zeros((head_hidden, 1), param_dtype))
        self.b2 = nnx.Param(jnp.zeros((1,), param_dtype))

    def __call__(self, h: jax.Array) -> jax.Array:
        """h `[..., D]` → scores `[...]` float32."""
        h = h.astype(jnp.float32)
        z = jax.nn.gelu(h @ self.w1[...].astype(jnp.float32) + self.b1[...].astype(jnp.float32))
        return (z @ self.w2[...].astype(jnp.float32) + self.b2[...].astype(jnp.float32))[..., 0]


def last_real_index(positions: jax.Array) -> jax.Array:
    """Index `[B]` of the last real (position ≥ 0) token of each row of positions `[B, T]`."""
    t = positions.shape[-1]
    idx = jnp.arange(t)
    return jnp.max(jnp.where(positions >= 0, idx, -1), axis=-1)


def gather_hidden(hidden: jax.Array, index: jax.Array) -> jax.Array:
    """hidden `[B, T, D]`, index `[B]` → `[B, D]`."""
    return jnp.take_along_axis(hidden, index[:, None, None].astype(jnp.int32), axis=1)[:, 0]


def score_sequences(head: ScoringHead, hidden: jax.Array, positions: jax.Array, index: jax.Array | None = None,
                    stop_gradient: bool = False) -> jax.Array:
    """Scores `[B]` from hidden `[B, T, D]` at `index` `[B]` (default: each row's last real token).

    stop_gradient=True holds the hidden state fixed, so the score's gradient reaches φ only.
    """
    index = last_real_index(positions) if index is None else index
    h = gather_hidden(hidden, index)
    return head(jax.lax.stop_gradient(h) if stop_gradient else h)
