"""R2Rank's RL objectives as small pure functions with explicit masks (paper §3.3, Algorithm 1).

Shapes: U users, K candidates, M sampled rankings, R rationale tokens per candidate.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r2rank_jax.ranking import plackett_luce as pl
from r2rank_jax.ranking.metrics import ndcg_at_k_jax


def sample_rankings(key: jax.Array, user_ids: jax.Array, scores: jax.Array, num_rankings: int,
                    mask: jax.Array) -> jax.Array:
    """τ_m ~ PL(s): `[M, U, K]` int32 permutations (masked candidates last).

    Each user's noise comes from `fold_in(key, user_id)` (user_ids `[U]`), so the draws do not depend on
    how the batch is split into microbatches or sharded.
    """
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(user_ids)
    perms = jax.vmap(lambda k, s, m: pl.sample(k, s, num_rankings, mask=m))(keys, scores, mask)   # [U, M, K]
    return jnp.swapaxes(perms, 0, 1)


def ranking_rewards(perms: jax.Array, relevance: jax.Array, mask: jax.Array, k: int) -> jax.Array:
    """ρ(τ) = NDCG@k of each sampled ranking: perms `[M, U, K]` → `[M, U]`."""
    m = perms.shape[0]
    rel = jnp.broadcast_to(relevance, (m,) + relevance.shape)
    msk = jnp.broadcast_to(mask, (m,) + mask.shape)
    return ndcg_at_k_jax(perms, rel, k, mask=msk)


BASELINES = ("none", "mean", "loo_users")


def reward_baseline(rewards: jax.Array, kind: str) -> jax.Array:
    """b `[U]` from rewards `[M, U]`: "none" → 0; "mean" → mean over the M rankings of the user;
    "loo_users" → leave-one-out over users: the mean reward of the *other* users of the (micro)batch
    (needs ≥ 2 users; under listwise advantages it is what gives θ a non-zero gradient)."""
    if kind == "none":
        return jnp.zeros(rewards.shape[1:], rewards.dtype)
    if kind == "mean":
        return jnp.mean(rewards, axis=0)
    if kind == "loo_users":
        u = rewards.shape[1]
        if u < 2:
            raise ValueError("baseline='loo_users' needs at least 2 users per microbatch")
        per_user = jnp.mean(rewards, axis=0)
        return (jnp.sum(per_user) - per_user) / (u - 1)
    raise ValueError(f"unknown baseline {kind!r} (expected one of {BASELINES})")


def reinforce_loss(scores: jax.Array, perms: jax.Array, rewards: jax.Array, baseline: jax.Array,
                   mask: jax.Array) -> jax.Array:
    """Eq. 5: −mean_{m,u} (ρ_mu − b_u)·log P(τ_mu | s_u); scores `[U, K]`, perms `[M, U, K]` → scalar."""
    logp = jax.vmap(lambda p: pl.log_prob(scores, p, mask=mask))(perms)            # [M, U]
    weight = jax.lax.stop_gradient(rewards - baseline[None])
    return -jnp.mean(weight * logp)


def listwise_advantages(rewards: jax.Array, baseline: jax.Array, num_candidates: int) -> jax.Array:
    """Eq. 6: every token of every rationale of user u gets A = ρ(τ_m) − b: `[M, U]` → `[M, U, K]`."""
    adv = rewards - baseline[None]
    return jnp.broadcast_to(adv[..., None], adv.shape + (num_candidates,))


def item_advantages(scores: jax.Array, perms: jax.Array, rewards: jax.Array, baseline: jax.Array,
                    mask: jax.Array) -> jax.Array:
    """Item-level credit through the PL surrogate: A_k = mean_m (ρ_m − b)·∂log P(τ_m|s)/∂s_k → `[1, U, K]`."""
    grads = jax.vmap(lambda p: pl.score_function(scores, p, mask=mask))(perms)       # [M, U, K]
    adv = jnp.mean((rewards - baseline[None])[..., None] * grads, axis=0)
    return adv[None]


def ppo_token_objective(new_logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, token_mask: jax.Array,
                        clip_eps: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 6, per token: min(γ·A, clip(γ, 1−ε, 1+ε)·A) with γ = exp(new − old).

    new_logp, old_logp, token_mask: `[U, K, R]`; advantages `[M, U, K]` (averaged over the M rankings
    after the min, which keeps each ranking's clipping exact). Returns (objective per token `[U, K, R]`
    already masked, stats: clip indicator and log-ratio per token).
    """
    log_ratio = jnp.where(token_mask, new_logp - old_logp, 0.0)
    ratio = jnp.exp(log_ratio)
    adv = jax.lax.stop_gradient(advantages)[..., None]                                # [M, U, K, 1]
    unclipped = ratio[None] * adv
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)[None] * adv
    objective = jnp.mean(jnp.minimum(unclipped, clipped), axis=0)
    clipped_tok = (jnp.abs(ratio - 1.0) > clip_eps) & token_mask
    return jnp.where(token_mask, objective, 0.0), {"clipped": clipped_tok, "log_ratio": log_ratio}


def approx_kl(log_ratio: jax.Array, token_mask: jax.Array) -> jax.Array:
    """Unbiased KL(old‖new) estimate per token, (γ − 1) − log γ (k3), summed over masked tokens."""
    k3 = jnp.exp(log_ratio) - 1.0 - log_ratio
    return jnp.sum(jnp.where(token_mask, k3, 0.0))
