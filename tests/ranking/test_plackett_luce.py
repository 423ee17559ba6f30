"""Plackett-Luce log-prob, score function, sampling and argsort against brute-force references."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from _ranking_refs import pl_probability, rank_by_scores
from r2rank_jax.ranking import plackett_luce as pl


def _all_perms(k: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(k))), dtype=np.int32).reshape(-1, k)


def _random_perms(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.permuted(np.broadcast_to(np.arange(shape[-1]), shape), axis=-1).astype(np.int32)


def _is_masked_last(perm: np.ndarray, mask: np.ndarray) -> bool:
    """Every row of mask-in-rank-order is True...True False...False."""
    ranked = np.take_along_axis(mask, perm, axis=-1).astype(np.int8)
    return bool(np.all(np.diff(ranked, axis=-1) <= 0))


def _is_permutation(perm: np.ndarray) -> bool:
    return bool(np.all(np.sort(perm, axis=-1) == np.arange(perm.shape[-1])))


# ------------------------------------------------------------------------------------ log_prob


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_probabilities_sum_to_one_and_match_product_formula_x64(x64: None, k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.normal(scale=2.0, size=k)
    perms = _all_perms(k)
    logp = pl.log_prob(jnp.broadcast_to(jnp.asarray(scores), perms.shape), jnp.asarray(perms))
    assert logp.dtype == jnp.float64
    probs = np.exp(np.asarray(logp))
    assert abs(probs.sum() - 1.0) <= 1e-12
    reference = np.array([pl_probability(scores.tolist(), p.tolist()) for p in perms])
    np.testing.assert_allclose(probs, reference, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [4, 6])
def test_probabilities_sum_to_one_float32(k: int) -> None:
    scores = np.random.default_rng(10 + k).normal(scale=3.0, size=k).astype(np.float32)
    perms = _all_perms(k)
    logp = pl.log_prob(jnp.broadcast_to(scores, perms.shape), perms)
    assert logp.dtype == jnp.float32
    assert abs(float(jnp.exp(logp).sum()) - 1.0) <= 1e-5


def test_log_prob_batched_leading_dims_equal_loop() -> None:
    rng = np.random.default_rng(0)
    k = 5
    scores = rng.normal(size=(2, 3, k)).astype(np.float32)
    perms = _random_perms(rng, (2, 3, k))
    mask = rng.random((2, 3, k)) < 0.7
    for m in (None, mask):
        batched = pl.log_prob(scores, perms, m)
        grads = pl.score_function(scores, perms, m)
        assert batched.shape == (2, 3) and grads.shape == (2, 3, k)
        for i, j in itertools.product(range(2), range(3)):
            row_mask = None if m is None else m[i, j]
            np.testing.assert_allclose(batched[i, j], pl.log_prob(scores[i, j], perms[i, j], row_mask), rtol=1e-6)
            np.testing.assert_allclose(grads[i, j], pl.score_function(scores[i, j], perms[i, j], row_mask), atol=1e-6)


def test_log_prob_under_jit_and_vmap_over_samples() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(3, 6)).astype(np.float32)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2, [False, True, True, False, True, True]])
    perms = _random_perms(rng, (7, 3, 6))
    per_sample = jax.jit(jax.vmap(pl.log_prob, in_axes=(None, 0, None)))(scores, perms, mask)
    broadcast = pl.log_prob(np.broadcast_to(scores, perms.shape), perms, np.broadcast_to(mask, perms.shape))
    assert per_sample.shape == (7, 3)
    np.testing.assert_allclose(per_sample, broadcast, rtol=1e-6)


def test_large_magnitude_scores_give_finite_log_prob_and_gradients() -> None:
    scores = jnp.array([[1e4, 0.0, -1e4, 5e3], [-1e4, -1e4 + 1.0, 1e4, 1e4]], dtype=jnp.float32)
    best = pl.argsort_ranking(scores)
    worst = best[..., ::-1]
    for perm in (best, worst):
        assert np.all(np.isfinite(pl.log_prob(scores, perm)))
        assert np.all(np.isfinite(pl.score_function(scores, perm)))
        assert np.all(np.isfinite(jax.grad(lambda s: pl.log_prob(s, perm).sum())(scores)))
    # Best-first for the first row is (near-)certain; the second row has a coin flip between ties.
    # float32 spacing at 1e4 is ~1e-3, which bounds the attainable accuracy of s - logsumexp.
    expected = [0.0, -math.log(2.0) - math.log1p(math.exp(-1.0))]
    np.testing.assert_allclose(pl.log_prob(scores, best), expected, atol=2e-3)
    assert float(pl.log_prob(scores, worst)[0]) < -1e4


# ------------------------------------------------------------------------------------ gradients


def test_gradient_matches_central_finite_differences_x64(x64: None) -> None:
    rng = np.random.default_rng(2)
    k, eps = 6, 1e-6
    scores = rng.normal(scale=1.5, size=k)
    perm = rng.permutation(k)
    for mask in (None, np.array([True, False, True, True, False, True])):
        grad = np.asarray(jax.grad(pl.log_prob)(jnp.asarray(scores), perm, mask))
        numeric = np.empty(k)
        for i in range(k):
            step = np.zeros(k)
            step[i] = eps
            up = float(pl.log_prob(scores + step, perm, mask))
            down = float(pl.log_prob(scores - step, perm, mask))
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, atol=1e-8)


@pytest.mark.parametrize("use_x64", [False, True])
def test_score_function_equals_autodiff(use_x64: bool) -> None:
    with jax.enable_x64(use_x64):
        rng = np.random.default_rng(3)
        shape = (4, 2, 7)
        scores = jnp.asarray(rng.normal(scale=2.0, size=shape))
        perms = _random_perms(rng, shape)
        mask = rng.random(shape) < 0.6
        mask[0, 0] = False  # an all-padding row
        for m in (None, mask):
            autodiff = jax.grad(lambda s, m=m: pl.log_prob(s, perms, m).sum())(scores)
            closed = pl.score_function(scores, perms, m)
            assert closed.dtype == scores.dtype
            np.testing.assert_allclose(closed, autodiff, atol=1e-12 if use_x64 else 2e-6)
        assert np.all(np.asarray(pl.score_function(scores, perms, mask))[~mask] == 0.0)


def test_score_function_advantage_use_case_is_jittable() -> None:
    """A_k = mean_m (rho_m - b) * d log P(tau_m) / d s_k, the way the trainer uses it."""
    scores = jnp.array([0.5, -0.2, 1.0, 0.0])
    perms = _random_perms(np.random.default_rng(9), (16, 4))
    rewards = jnp.linspace(0.0, 1.0, 16)

    @jax.jit
    def advantages(s: jax.Array) -> jax.Array:
        grads = jax.vmap(pl.score_function, in_axes=(None, 0))(s, perms)
        return jnp.mean((rewards - rewards.mean())[:, None] * grads, axis=0)

    expected = jax.grad(lambda s: jnp.mean((rewards - rewards.mean()) * jax.vmap(pl.log_prob, (None, 0))(s, perms)))(scores)
    np.testing.assert_allclose(advantages(scores), expected, atol=1e-6)


# ------------------------------------------------------------------------------------ masking


def test_masked_log_prob_equals_unmasked_sub_problem_x64(x64: None) -> None:
    rng = np.random.default_rng(4)
    k = 7
    for _ in range(10):
        scores = rng.normal(size=k)
        mask = rng.random(k) < 0.6
        perm = rng.permutation(k)  # masked candidates anywhere, not only at the end
        real = np.flatnonzero(mask)
        sub_scores = scores[real]
        sub_perm = np.array([np.flatnonzero(real == c)[0] for c in perm if mask[c]], dtype=np.int32)
        masked = float(pl.log_prob(scores, perm, mask))
        expected = float(pl.log_prob(sub_scores, sub_perm)) if real.size else 0.0
        assert masked == pytest.approx(expected, abs=1e-12)
        assert math.exp(masked) == pytest.approx(pl_probability(scores.tolist(), perm.tolist(), mask.tolist()), rel=1e-12)


def test_all_masked_row_has_zero_log_prob_and_zero_gradient() -> None:
    scores = jnp.array([1.0, 2.0, 3.0])
    mask = jnp.zeros(3, dtype=bool)
    perm = jnp.array([2, 0, 1])
    assert float(pl.log_prob(scores, perm, mask)) == 0.0
    np.testing.assert_array_equal(jax.grad(pl.log_prob)(scores, perm, mask), np.zeros(3))
    np.testing.assert_array_equal(pl.score_function(scores, perm, mask), np.zeros(3))


def test_masked_candidates_are_ranked_last_by_sample_and_argsort() -> None:
    rng = np.random.default_rng(5)
    shape = (2, 3, 9)  # the shape of the next test too: one compilation of `sample`
    scores = rng.normal(scale=5.0, size=shape).astype(np.float32)
    mask = rng.random(shape) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    scores[1, 0, ~mask[1, 0]] = 100.0  # padding with huge scores still goes last
    scores[1, 1, mask[1, 1]] = -np.inf  # real candidates with -inf still go first
    ranking = np.asarray(pl.argsort_ranking(scores, mask))
    samples = np.asarray(pl.sample(jax.random.key(2), scores, 50, mask))
    assert ranking.dtype == np.int32 and samples.dtype == np.int32
    assert samples.shape == (50, *shape)
    assert _is_permutation(ranking) and _is_permutation(samples)
    assert _is_masked_last(ranking, mask)
    assert _is_masked_last(samples, np.broadcast_to(mask, samples.shape))


# ------------------------------------------------------------------------------------ sampling


def test_gumbel_sampling_frequencies_match_pl_probabilities() -> None:
    k, n = 4, 200_000
    scores = np.array([1.0, 0.2, -0.5, 0.6])
    perms = np.asarray(pl.sample(jax.random.key(1234), jnp.asarray(scores, jnp.float32), n))
    all_perms = _all_perms(k)
    place_values = k ** np.arange(k)[::-1]  # a permutation read as a base-k number
    observed = np.array([np.sum(perms @ place_values == p @ place_values) for p in all_perms])
    assert observed.sum() == n
    expected_p = np.array([pl_probability(scores.tolist(), p) for p in all_perms.tolist()])
    result = stats.chisquare(observed, n * expected_p)
    assert result.pvalue > 1e-3, result


def test_masked_sampling_frequencies_match_sub_problem() -> None:
    n = 40_000
    scores = np.array([0.5, 9.0, -0.3, 9.0, 0.8])
    mask = np.array([True, False, True, False, True])
    perms = np.asarray(pl.sample(jax.random.key(7), jnp.asarray(scores, jnp.float32), n, jnp.asarray(mask)))
    orders = list(itertools.permutations([0, 2, 4]))
    observed = np.array([np.sum(np.all(perms[:, :3] == o, axis=-1)) for o in orders])
    assert observed.sum() == n
    expected_p = np.array([pl_probability(scores.tolist(), list(o)) for o in orders])
    assert stats.chisquare(observed, n * expected_p).pvalue > 1e-3


def test_sample_batched_shape_and_dominant_scores() -> None:
    # With score gaps of 1000 the Gumbel noise cannot reorder anything: every sample is the argsort.
    rng = np.random.default_rng(6)
    scores = 1000.0 * rng.permuted(np.broadcast_to(np.arange(9.0), (2, 3, 9)), axis=-1).astype(np.float32)
    samples = pl.sample(jax.random.key(3), scores, 50)
    assert samples.shape == (50, 2, 3, 9)
    np.testing.assert_array_equal(samples, np.broadcast_to(pl.argsort_ranking(scores), samples.shape))


# ------------------------------------------------------------------------------------ argsort


def test_argsort_ranking_matches_reference_with_ties() -> None:
    rng = np.random.default_rng(8)
    scores = rng.integers(-2, 3, size=(5, 4, 8)).astype(np.float32)
    mask = rng.random(scores.shape) < 0.7
    for m in (None, mask):
        got = np.asarray(pl.argsort_ranking(scores, m))
        for idx in np.ndindex(scores.shape[:-1]):
            row_mask = None if m is None else m[idx].tolist()
            assert got[idx].tolist() == rank_by_scores(scores[idx].tolist(), row_mask)


def test_argsort_ranking_signed_zero_ties_by_index() -> None:
    np.testing.assert_array_equal(pl.argsort_ranking(jnp.array([0.0, -0.0, 0.0, 1.0])), [3, 0, 1, 2])
    np.testing.assert_array_equal(pl.argsort_ranking(jnp.array([-0.0, 0.0])), [0, 1])


# ------------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors() -> None:
    scores = jnp.zeros((2, 4))
    perm = jnp.tile(jnp.arange(4), (2, 1))
    with pytest.raises(ValueError, match="perm shape"):
        pl.log_prob(scores, perm[0])
    with pytest.raises(ValueError, match="mask shape"):
        pl.log_prob(scores, perm, jnp.ones((4,), bool))
    with pytest.raises(TypeError, match="integer"):
        pl.log_prob(scores, perm.astype(jnp.float32))
    with pytest.raises(TypeError, match="boolean"):
        pl.score_function(scores, perm, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="candidate axis"):
        pl.argsort_ranking(jnp.float32(1.0))
    with pytest.raises(ValueError, match="num_samples"):
        pl.sample(jax.random.key(0), scores, 0)
