"""The Plackett-Luce ranking policy over K candidate scores.

P(tau | s) = prod_k exp(s_tau(k)) / sum_{j >= k} exp(s_tau(j)), where perm = tau lists candidate indices
best first (perm[i] = candidate placed at rank i). Everything is vectorized over any leading batch
dims `[...]` and works under jit/vmap/grad.

An optional boolean mask `[..., K]` (True = real candidate) marks padding: masked candidates are
ranked after every real one, and probabilities are those of the real candidates' relative order, so
a masked problem equals the sub-problem restricted to the real candidates.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from r2rank_jax.ranking import _checks

__all__ = ["log_prob", "score_function", "sample", "argsort_ranking"]


def _as_scores(scores: jax.typing.ArrayLike) -> jax.Array:
    scores = jnp.asarray(scores)
    _checks.check_has_candidate_axis("scores", scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(jnp.result_type(float))
    return scores


def _as_mask(mask: jax.typing.ArrayLike | None, scores: jax.Array) -> jax.Array:
    if mask is None:
        return jnp.ones(scores.shape, dtype=bool)
    _checks.check_bool("mask", mask)
    _checks.check_same_shape("scores", scores, "mask", mask)
    return jnp.asarray(mask)


def _as_perm(perm: jax.typing.ArrayLike, scores: jax.Array) -> jax.Array:
    _checks.check_integer("perm", perm)
    _checks.check_same_shape("scores", scores, "perm", perm)
    return jnp.asarray(perm)


def _in_rank_order(
    scores: jax.Array, perm: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Scores and mask gathered into rank order: `[..., K]` each, entry i belongs to rank i."""
    return (
        jnp.take_along_axis(scores, perm, axis=-1),
        jnp.take_along_axis(mask, perm, axis=-1),
    )


def _masked_cumlogsumexp(x: jax.Array, mask: jax.Array, reverse: bool) -> jax.Array:
    """log sum_{j >= i} (reverse) or sum_{j <= i} exp(x_j) over unmasked j, along the last axis.

    Masked entries enter as -inf. jax's logaddexp (which cumlogsumexp's derivative is built on) is
    safe for -inf operands, so gradients stay finite even for all-masked suffixes; those positions
    come out as -inf and callers discard them.
    """
    filled = jnp.where(mask, x, -jnp.inf)
    return lax.cumlogsumexp(filled, axis=x.ndim - 1, reverse=reverse)


# Public functions validate shapes eagerly, then call these jitted cores: eager callers get one
# compiled kernel per shape instead of dispatching every op, and under an outer jit they inline.


@jax.jit
def _log_prob(scores: jax.Array, perm: jax.Array, mask: jax.Array) -> jax.Array:
    s_ranked, m_ranked = _in_rank_order(scores, perm, mask)
    suffix_lse = _masked_cumlogsumexp(s_ranked, m_ranked, reverse=True)
    return jnp.sum(jnp.where(m_ranked, s_ranked - suffix_lse, 0.0), axis=-1)


@jax.jit
def _score_function(scores: jax.Array, perm: jax.Array, mask: jax.Array) -> jax.Array:
    s_ranked, m_ranked = _in_rank_order(scores, perm, mask)
    suffix_lse = _masked_cumlogsumexp(s_ranked, m_ranked, reverse=True)
    prefix_inv = _masked_cumlogsumexp(-suffix_lse, m_ranked, reverse=False)
    grad_ranked = jnp.where(m_ranked, 1.0 - jnp.exp(s_ranked + prefix_inv), 0.0)
    rank_of = jnp.argsort(perm, axis=-1)  # inverse permutation: candidate -> its rank
    return jnp.take_along_axis(grad_ranked, rank_of, axis=-1)


@jax.jit
def _argsort_ranking(scores: jax.Array, mask: jax.Array) -> jax.Array:
    axis = scores.ndim - 1
    # -0.0 and 0.0 are distinct keys in lax.sort's total order; canonicalize so they tie.
    neg_scores = jnp.where(scores == 0, jnp.zeros_like(scores), -scores)
    masked_last = jnp.logical_not(mask).astype(jnp.int32)
    index = lax.broadcasted_iota(jnp.int32, scores.shape, axis)
    *_, perm = lax.sort((masked_last, neg_scores, index), dimension=axis, is_stable=True, num_keys=2)
    return perm


@partial(jax.jit, static_argnums=2)
def _sample(key: jax.Array, scores: jax.Array, num_samples: int, mask: jax.Array) -> jax.Array:
    shape = (num_samples, *scores.shape)
    # Drawn flat then reshaped: same i.i.d. noise, but XLA:CPU compiles the threefry generator for
    # a rank-1 shape in a fraction of the time it takes for a rank-4 one (~0.4 s vs ~4 s).
    gumbel = jax.random.gumbel(key, (math.prod(shape),), dtype=scores.dtype).reshape(shape)
    return _argsort_ranking(scores + gumbel, jnp.broadcast_to(mask, shape))


def log_prob(
    scores: jax.typing.ArrayLike,
    perm: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """log P(perm | scores) under Plackett-Luce.

    Args:
      scores: `[..., K]` float logits, one per candidate.
      perm: `[..., K]` int, perm[..., i] = candidate index placed at rank i (must be a permutation;
        not checked, as that cannot be done under jit).
      mask: optional `[..., K]` bool, True = real candidate. Masked candidates contribute nothing,
        wherever perm puts them: the result is log P of the real candidates' relative order.
        Mark padding with the mask rather than -inf scores (-inf - -inf gives NaN).

    Returns:
      `[...]` log-probabilities: sum_k (s_tau(k) - logsumexp_{j >= k} s_tau(j)), computed with a
      reverse cumulative logsumexp so that scores of any magnitude stay finite. Rows with no real
      candidate give 0.

    To score many sampled perms `[M, ..., K]` against one set of scores, vmap over the sample axis:
    `jax.vmap(log_prob, in_axes=(None, 0, None))(scores, perms, mask)`.
    """
    scores = _as_scores(scores)
    perm = _as_perm(perm, scores)
    return _log_prob(scores, perm, _as_mask(mask, scores))


def score_function(
    scores: jax.typing.ArrayLike,
    perm: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """d log P(perm | scores) / d scores in closed form: `[..., K]`, indexed by candidate.

    With L_k = logsumexp of the scores still available at step k (ranks k..K-1), the candidate at
    rank r appears once as the chosen item (+1) and in the normalizer of every step k <= r, where its
    probability of being picked is exp(s_tau(r) - L_k). Hence

        d log P / d s_tau(r) = 1 - sum_{k <= r} exp(s_tau(r) - L_k) = 1 - exp(s_tau(r) + C_r),
        C_r = log sum_{k <= r} exp(-L_k)   (a forward cumulative logsumexp).

    L_k >= L_r >= s_tau(r) for k <= r, so the exponent is at most log(r + 1): no overflow. Steps and
    candidates that are masked are skipped, and masked candidates get gradient 0. Equals
    `jax.grad(log_prob)`; used for item-level advantages A_k = mean_m (rho_m - b) * d log P(tau_m)/d s_k.

    Args/shapes as in `log_prob`.
    """
    scores = _as_scores(scores)
    perm = _as_perm(perm, scores)
    return _score_function(scores, perm, _as_mask(mask, scores))


def argsort_ranking(
    scores: jax.typing.ArrayLike, mask: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """Deterministic ranking by descending score: `[..., K]` int32 perm (perm[i] = candidate at rank i).

    Ties keep the lower candidate index first; masked candidates come after every real one (even
    real ones scored -inf or NaN), themselves in index order.
    """
    scores = _as_scores(scores)
    return _argsort_ranking(scores, _as_mask(mask, scores))


def sample(
    key: jax.Array,
    scores: jax.typing.ArrayLike,
    num_samples: int,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Draw exact Plackett-Luce permutations by Gumbel-perturbed argsort (descending).

    Args:
      key: a PRNG key.
      scores: `[..., K]` float logits.
      num_samples: M, a Python int >= 1.
      mask: optional `[..., K]` bool, True = real candidate; masked ones are always ranked last.

    Returns:
      `[M, ..., K]` int32 permutations, perm[m, ..., i] = candidate at rank i in sample m.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a Python int >= 1; got {num_samples!r}")
    scores = _as_scores(scores)
    return _sample(key, scores, num_samples, _as_mask(mask, scores))
