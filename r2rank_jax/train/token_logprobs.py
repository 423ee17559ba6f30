"""Log-probabilities (and entropies) of given tokens, computed in chunks so that the `[N, V]` logits
of a long rationale batch never exist at once: each chunk is rematerialized in the backward pass."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r2rank_jax.models.decoder import Decoder


def token_logprobs(model: Decoder, hidden: jax.Array, targets: jax.Array, temperature: float | jax.Array = 1.0,
                   chunk: int = 64) -> tuple[jax.Array, jax.Array]:
    """hidden `[B, R, D]` (the state that predicts each target), targets `[B, R]` int →
    (log p(target) `[B, R]` float32, entropy `[B, R]` float32 of the temperature-scaled distribution).

    The entropy is a metric: its gradient is stopped.
    """
    b, r, d = hidden.shape
    chunk = max(1, min(chunk, r))
    pad = (-r) % chunk
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    n = (r + pad) // chunk
    h = hidden.reshape(b, n, chunk, d).swapaxes(0, 1)                  # [n, B, chunk, D]
    t = targets.reshape(b, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(h_c, t_c):
        logits = model.logits(h_c) / temperature                        # [B, chunk, V] float32
        logp_all = jax.nn.log_softmax(logits, axis=-1)
        logp = jnp.take_along_axis(logp_all, t_c[..., None].astype(jnp.int32), axis=-1)[..., 0]
        p = jnp.exp(jax.lax.stop_gradient(logp_all))
        entropy = -jnp.sum(p * jax.lax.stop_gradient(logp_all), axis=-1)
        return logp, entropy

    logp, entropy = jax.lax.map(lambda xs: one(*xs), (h, t))
    logp = logp.swapaxes(0, 1).reshape(b, n * chunk)[:, :r]
    entropy = entropy.swapaxes(0, 1).reshape(b, n * chunk)[:, :r]
    return logp, entropy
