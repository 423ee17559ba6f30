"""Next-token choice from logits: greedy, temperature, top-k, top-p, and the chosen token's log-prob.

Truncation never sorts the whole vocabulary in the common case: a static `num_candidates` C
(`lax.top_k`) holds the top-k set whenever top_k <= C, and the top-p nucleus whenever the C best
tokens carry at least top_p of the mass; only when some row's nucleus is wider does a `lax.cond`
take the full-vocabulary path (one branch runs, the predicate is a scalar). When no row truncates
(the RL default: temperature 1, top_p 1, top_k 0) the top-k pass is skipped as well.

Sampling is an exact inverse-CDF draw over the full vocabulary in two levels (block sums, then
inside the chosen block): one uniform per row instead of V Gumbel draws.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r2rank_jax.sampling.params import SamplingParams

_BLOCK = 256


def _truncation_threshold(z: jax.Array, params: SamplingParams, c: int) -> tuple[jax.Array, jax.Array]:
    """Smallest kept logit per row `[B]` using the top c logits, and whether that is exact `[B]`."""
    vals, _ = jax.lax.top_k(z, c)                                   # [B, c], descending
    top_k = jnp.where(params.top_k > 0, jnp.minimum(params.top_k, c), c)
    in_k = jnp.arange(c)[None, :] < top_k[:, None]
    kth = jnp.where(params.top_k > 0, jnp.take_along_axis(vals, top_k[:, None] - 1, axis=1)[:, 0], -jnp.inf)
    # Nucleus mass is relative to the top-k set when top-k is on, else to the full vocabulary.
    lse = jnp.where(params.top_k > 0, jax.nn.logsumexp(jnp.where(in_k, vals, -jnp.inf), axis=1),
                    jax.nn.logsumexp(z, axis=1))
    p = jnp.where(in_k, jnp.exp(vals - lse[:, None]), 0.0)
    cum = jnp.cumsum(p, axis=1)
    keep = in_k & (cum - p < params.top_p[:, None])
    n_keep = jnp.maximum(jnp.sum(keep, axis=1), 1)
    nucleus = jnp.take_along_axis(vals, n_keep[:, None] - 1, axis=1)[:, 0]
    thr = jnp.where(params.top_p < 1.0, nucleus, kth)
    exact = (params.top_k > 0) | (params.top_p >= 1.0) | (cum[:, -1] >= params.top_p) | (c == z.shape[1])
    return thr, exact


def truncation_threshold(z: jax.Array, params: SamplingParams, num_candidates: int) -> jax.Array:
    """Per-row threshold `[B]`: tokens with tempered logit z >= threshold are kept (-inf: keep all).

    z: tempered logits `[B, V]`. Greedy rows (temperature 0) get -inf (they take the argmax).
    """
    v = z.shape[1]
    c = min(num_candidates, v)
    truncates = ((params.top_k > 0) | (params.top_p < 1.0)) & (params.temperature > 0)

    def truncate():
        thr, exact = _truncation_threshold(z, params, c)
        if c < v:
            thr = jax.lax.cond(jnp.all(exact | ~truncates), lambda: thr,
                               lambda: _truncation_threshold(z, params, v)[0])
        return thr

    thr = jax.lax.cond(jnp.any(truncates), truncate, lambda: jnp.full(z.shape[:1], -jnp.inf, z.dtype))
    return jnp.where(truncates, thr, -jnp.inf)


def inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """Index `[B]` drawn with probability weights / sum(weights) (weights `[B, V]` >= 0, u `[B]` in [0, 1))."""
    b, v = weights.shape
    nb = -(-v // _BLOCK)
    w = jnp.pad(weights, ((0, 0), (0, nb * _BLOCK - v))).reshape(b, nb, _BLOCK)
    block_sum = jnp.sum(w, axis=2)                                  # [B, nb]
    block_cum = jnp.cumsum(block_sum, axis=1)
    target = u * block_cum[:, -1]
    # Clamp to the last block / token with positive weight: float rounding must never pick a zero weight.
    last_block = jnp.max(jnp.where(block_sum > 0, jnp.arange(nb), 0), axis=1)
    bi = jnp.minimum(jnp.sum(block_cum <= target[:, None], axis=1), last_block)
    inner = jnp.take_along_axis(w, bi[:, None, None], axis=1)[:, 0]  # [B, block]
    before = jnp.take_along_axis(block_cum - block_sum, bi[:, None], axis=1)[:, 0]
    rest = jnp.maximum(target - before, 0.0)
    inner_cum = jnp.cumsum(inner, axis=1)
    last_tok = jnp.max(jnp.where(inner > 0, jnp.arange(_BLOCK), 0), axis=1)
    ti = jnp.minimum(jnp.sum(inner_cum <= rest[:, None], axis=1), last_tok)
    return (bi * _BLOCK + ti).astype(jnp.int32)


def argmax(x: jax.Array) -> jax.Array:
    """First index of the maximum along the last axis `[B, V]` → `[B]` int32 (as jnp.argmax for finite
    inputs). Two plain reductions: XLA CPU runs jnp.argmax's variadic reduce ~10x slower."""
    iota = jnp.arange(x.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(x == jnp.max(x, axis=-1, keepdims=True), iota, x.shape[-1]), axis=-1)


def choose_tokens(logits: jax.Array, params: SamplingParams, key: jax.Array, num_candidates: int,
                  u: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Next tokens `[B]` int32 and their log-probs `[B]` float32 from logits `[B, V]`.

    u: the `[B]` uniforms in [0, 1) to draw with (default: `uniform(key, [B])`; a split decode passes
    its rows' share of the full batch's draw, so each row gets the same number on any device count).

    The log-prob is under the distribution the token was drawn from (tempered, truncated and
    renormalized); greedy rows report the untempered model log-prob of the argmax.
    """
    logits = logits.astype(jnp.float32)
    greedy = params.temperature <= 0
    z = logits / jnp.where(greedy, 1.0, params.temperature)[:, None]
    thr = truncation_threshold(z, params, num_candidates)
    zmax = jnp.max(z, axis=1, keepdims=True)
    weights = jnp.where(z >= thr[:, None], jnp.exp(z - zmax), 0.0)
    log_norm = zmax[:, 0] + jnp.log(jnp.sum(weights, axis=1))
    u = jax.random.uniform(key, z.shape[:1], jnp.float32) if u is None else u
    b = logits.shape[0]
    # Scalar predicates: only the branch needed runs (all-sampled rollouts skip the argmax and vice versa).
    best = jax.lax.cond(jnp.any(greedy), lambda: argmax(logits), lambda: jnp.zeros((b,), jnp.int32))
    drawn = jax.lax.cond(jnp.all(greedy), lambda: jnp.zeros((b,), jnp.int32), lambda: inverse_cdf(weights, u))
    tokens = jnp.where(greedy, best, drawn)
    logprobs = jnp.take_along_axis(z, tokens[:, None], axis=1)[:, 0] - log_norm
    return tokens, logprobs
