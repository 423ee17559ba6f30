"""R²ec's recommendation head and RecPO's objectives as small pure functions (JAX, jittable).

Shapes: U users, G reasonings per user (the RecPO group), K candidates, R reasoning tokens, D hidden.
Follows the paper "Towards Large Recommender Models with Reasoning" and its code
(github.com/YRYangang/RRec, trainers/RecPOTrainer.py); see docs/baselines_llm.md for what differs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores_jax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def head_scores(user_h: jax.Array, item_h: jax.Array, tau: float) -> jax.Array:
    """cos(user, item) / τ: user_h `[..., D]`, item_h `[..., K, D]` (same leading dims) → `[..., K]` float32."""
    return jnp.einsum("...d,...kd->...k", l2_normalize(user_h), l2_normalize(item_h)) / tau


def masked_log_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """log softmax over the real candidates (mask `[..., K]`); -inf on the masked ones."""
    return jax.nn.log_softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)


def fused_reward(scores: jax.Array, labels: jax.Array, mask: jax.Array, k: int, softmax_weight: float
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """r = (1 − w)·NDCG@k(ranking by scores) + w·softmax(scores)[target].

    scores `[U, G, K]`; labels `[U, K]` (1 on the target); mask `[U, K]` real candidates.
    Returns (reward, ndcg, target probability), each `[U, G]`.
    """
    rel = jnp.broadcast_to(labels[:, None].astype(jnp.float32), scores.shape)
    msk = jnp.broadcast_to(mask[:, None], scores.shape)
    ndcg = ndcg_at_k_from_scores_jax(scores, rel, k, msk)
    prob = jnp.sum(jnp.exp(masked_log_softmax(scores, msk)) * rel, axis=-1)
    return (1.0 - softmax_weight) * ndcg + softmax_weight * prob, ndcg, prob


def group_advantages(rewards: jax.Array, eps: float = 1e-8) -> jax.Array:
    """z-score within each group: (r − mean) / (std + eps), rewards `[U, G]` → `[U, G]`.

    std is the unbiased (G − 1) estimate, as torch's `std` in RRec.
    """
    mean = jnp.mean(rewards, axis=1, keepdims=True)
    std = jnp.std(rewards, axis=1, keepdims=True, ddof=1)
    return (rewards - mean) / (std + eps)


def clipped_token_objective(new_logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, token_mask: jax.Array,
                            eps_low: float, eps_high: float) -> tuple[jax.Array, jax.Array]:
    """Per token min(γ·A, clip(γ, 1 − ε_low, 1 + ε_high)·A), γ = exp(new − old) (to be maximized).

    new_logp, old_logp, token_mask `[U, G, R]`; advantages `[U, G]` (gradient stopped).
    Returns (objective `[U, G, R]`, 0 on masked tokens; clipped indicator `[U, G, R]` bool).
    """
    log_ratio = jnp.where(token_mask, new_logp - old_logp, 0.0)
    ratio = jnp.exp(log_ratio)
    adv = jax.lax.stop_gradient(advantages)[..., None]
    objective = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv)
    clipped = ((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)) & token_mask
    return jnp.where(token_mask, objective, 0.0), clipped


def item_loss(scores: jax.Array, labels: jax.Array, mask: jax.Array, advantages: jax.Array, kind: str
              ) -> tuple[jax.Array, jax.Array]:
    """The item loss on each group's best trajectory (highest advantage, first on ties).

    CE = −log softmax(scores)[target] of that trajectory, weighted by its (stopped) advantage for
    kind="advantage" (the gradient of RRec's item term, a clipped ratio of p(target) at ratio 1),
    unweighted for "ce", 0 for "none". scores `[U, G, K]` → (loss `[U]`, best index `[U]`).
    """
    best = jnp.argmax(advantages, axis=1)
    s = jnp.take_along_axis(scores, best[:, None, None], axis=1)[:, 0]                     # [U, K]
    ce = -jnp.sum(jnp.where(labels > 0, masked_log_softmax(s, mask), 0.0), axis=-1)
    if kind == "none":
        return jnp.zeros_like(ce), best
    if kind == "ce":
        return ce, best
    if kind == "advantage":
        a = jnp.take_along_axis(advantages, best[:, None], axis=1)[:, 0]
        return jax.lax.stop_gradient(a) * ce, best
    raise ValueError(f"item loss kind must be 'advantage', 'ce' or 'none', got {kind!r}")
