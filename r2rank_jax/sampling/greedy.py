"""Greedy decoding with a KV cache: one jitted prefill + `lax.while_loop` decode, per-row EOS stop."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.kv_cache import KVCache


@functools.partial(nnx.jit, static_argnames=("max_new_tokens",))
def greedy_generate(model: Decoder, tokens: jax.Array, positions: jax.Array, eos_ids: jax.Array,
                    max_new_tokens: int) -> tuple[jax.Array, jax.Array]:
    """Greedy continuation of left-padded prompts.

    tokens, positions: `[B, T]` (position -1 = padding); eos_ids: `[E]` int32 stop tokens.
    Returns (ids `[B, N]`, valid `[B, N]` bool) with N = max_new_tokens; ids after a row's EOS are 0
    and not valid (the EOS itself is valid).
    """
    b, t = tokens.shape
    cache = KVCache.init(model.config, b, t + max_new_tokens)
    out = model(tokens, positions, cache=cache, logits_at=jnp.full((b, 1), t - 1))
    first = jnp.argmax(out.logits[:, 0], axis=-1).astype(jnp.int32)
    next_pos = jnp.max(positions, axis=1) + 1

    ids = jnp.zeros((b, max_new_tokens), jnp.int32)
    valid = jnp.zeros((b, max_new_tokens), bool)

    def cond(carry):
        step, _, _, _, done, _, _ = carry
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        step, cache, token, pos, done, ids, valid = carry
        ids = ids.at[:, step].set(jnp.where(done, 0, token))
        valid = valid.at[:, step].set(~done)
        done = done | jnp.isin(token, eos_ids)
        out = model(token[:, None], pos[:, None], cache=cache, logits_at=jnp.zeros((b, 1), jnp.int32))
        token = jnp.argmax(out.logits[:, 0], axis=-1).astype(jnp.int32)
        return step + 1, out.cache, token, pos + 1, done, ids, valid

    init = (jnp.zeros((), jnp.int32), out.cache, first, next_pos, jnp.zeros((b,), bool), ids, valid)
    _, _, _, _, _, ids, valid = jax.lax.while_loop(cond, body, init)
    return ids, valid
