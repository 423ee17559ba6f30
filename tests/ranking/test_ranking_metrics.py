"""NDCG/DCG/HR/MRR in NumPy and JAX against a brute-force pure-Python implementation."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _ranking_refs as ref
from r2rank_jax.ranking import metrics
from r2rank_jax.ranking import plackett_luce as pl

BATCH = (4, 5)


def _random_case(k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """perm, graded relevance 0..3 (many ties and zeros) and a mask with full and empty rows."""
    rng = np.random.default_rng(seed)
    shape = (*BATCH, k)
    perm = rng.permuted(np.broadcast_to(np.arange(k), shape), axis=-1).astype(np.int32)
    relevance = rng.choice(4, size=shape, p=[0.55, 0.2, 0.15, 0.1])
    relevance[0, 0] = 0  # nothing relevant
    mask = rng.random(shape) < 0.7
    mask[0, 1], mask[0, 2] = True, False
    return perm, relevance, mask


def _per_row(fn, *arrays, **kwargs) -> np.ndarray:
    """Apply a single-row reference to every row of `[*BATCH, K]` arrays (None passes through)."""
    out = np.empty(BATCH)
    for idx in np.ndindex(*BATCH):
        out[idx] = fn(*[None if a is None else a[idx].tolist() for a in arrays], **kwargs)
    return out


@pytest.mark.parametrize("k", [1, 6, 20])
def test_metrics_match_bruteforce_numpy_and_jax(k: int) -> None:
    perm, relevance, mask = _random_case(k, seed=k)
    for m in (None, mask):
        cases = [
            (metrics.dcg_at_k, metrics.dcg_at_k_jax, ref.dcg, [3, 10]),
            (metrics.ndcg_at_k, metrics.ndcg_at_k_jax, ref.ndcg, [3, 10]),
            (metrics.hit_rate_at_k, metrics.hit_rate_at_k_jax, ref.hit_rate, [3, 10]),
            (metrics.mrr, metrics.mrr_jax, ref.reciprocal_rank, [None, 3]),
        ]
        for np_fn, jax_fn, ref_fn, cutoffs in cases:
            for cutoff in cutoffs:
                expected = _per_row(lambda p, r, mm: ref_fn(p, r, cutoff, mm), perm, relevance, m)
                got_np = np_fn(perm, relevance, cutoff, m)
                got_jax = jax_fn(perm, relevance, cutoff, m)
                assert got_np.shape == BATCH and got_jax.shape == BATCH
                np.testing.assert_allclose(got_np, expected, rtol=1e-12, atol=1e-12, err_msg=f"{np_fn.__name__}@{cutoff}")
                np.testing.assert_allclose(got_jax, got_np, rtol=1e-6, atol=1e-6, err_msg=f"{jax_fn.__name__}@{cutoff}")


@pytest.mark.parametrize("k", [6, 20])
def test_from_scores_helpers_rank_by_descending_score(k: int) -> None:
    _, relevance, mask = _random_case(k, seed=100 + k)
    scores = np.random.default_rng(k).integers(-3, 4, size=relevance.shape).astype(np.float32)  # ties
    for m in (None, mask):
        ranking = np.empty(relevance.shape, dtype=np.int32)
        for idx in np.ndindex(*BATCH):
            ranking[idx] = ref.rank_by_scores(scores[idx].tolist(), None if m is None else m[idx].tolist())
        np.testing.assert_array_equal(metrics.rank_by_scores(scores, m), ranking)
        np.testing.assert_array_equal(pl.argsort_ranking(scores, m), ranking)
        pairs = [
            (metrics.ndcg_at_k_from_scores, metrics.ndcg_at_k_from_scores_jax, ref.ndcg, 5),
            (metrics.hit_rate_at_k_from_scores, metrics.hit_rate_at_k_from_scores_jax, ref.hit_rate, 5),
            (metrics.mrr_from_scores, metrics.mrr_from_scores_jax, ref.reciprocal_rank, None),
        ]
        for np_fn, jax_fn, ref_fn, cutoff in pairs:
            expected = _per_row(lambda p, r, mm: ref_fn(p, r, cutoff, mm), ranking, relevance, m)
            np.testing.assert_allclose(np_fn(scores, relevance, cutoff, m), expected, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(jax_fn(scores, relevance, cutoff, m), expected, rtol=1e-6, atol=1e-6)


def test_ideal_ranking_scores_one_and_no_relevance_scores_zero() -> None:
    _, relevance, mask = _random_case(20, seed=7)
    for m in (None, mask):
        ideal = metrics.rank_by_scores(relevance, m)
        has_relevant = np.any((relevance > 0) & (True if m is None else m), axis=-1)
        assert not has_relevant.all()  # the case includes empty rows
        for cutoff in (1, 5, 10, 20):
            for values in (metrics.ndcg_at_k(ideal, relevance, cutoff, m), metrics.ndcg_at_k_jax(ideal, relevance, cutoff, m)):
                values = np.asarray(values)
                assert not np.any(np.isnan(values))
                np.testing.assert_allclose(values[has_relevant], 1.0, rtol=1e-6)
                np.testing.assert_array_equal(values[~has_relevant], 0.0)


def test_one_positive_helper() -> None:
    k = 20
    positive = np.array([[0, 7], [19, 3]])
    relevance = metrics.one_hot_relevance(positive, k)
    np.testing.assert_array_equal(relevance, metrics.one_hot_relevance_jax(positive, k))
    assert relevance.shape == (2, 2, k) and np.all(relevance.sum(-1) == 1)
    # Put the positive at 1-based rank r = 1, 2, 11, 20: NDCG@20 = 1/log2(r + 1), MRR = 1/r.
    perm = np.empty((2, 2, k), dtype=np.int32)
    for idx, rank in zip(np.ndindex(2, 2), [1, 2, 11, 20]):
        others = [c for c in range(k) if c != positive[idx]]
        perm[idx] = others[: rank - 1] + [positive[idx]] + others[rank - 1 :]
    ranks = np.array([[1, 2], [11, 20]])
    np.testing.assert_allclose(metrics.ndcg_at_k(perm, relevance, k), 1 / np.log2(ranks + 1), rtol=1e-12)
    np.testing.assert_allclose(metrics.ndcg_at_k(perm, relevance, 10), np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0))
    np.testing.assert_allclose(metrics.mrr(perm, relevance), 1 / ranks, rtol=1e-12)
    np.testing.assert_array_equal(metrics.hit_rate_at_k(perm, relevance, 10), ranks <= 10)


def test_expected_random_ndcg_closed_form() -> None:
    got = [metrics.expected_random_ndcg(k, 20) for k in (1, 5, 10)]
    np.testing.assert_allclose(got, [0.050, 0.147, 0.227], atol=5e-4)
    assert metrics.expected_random_ndcg(25, 20) == pytest.approx(metrics.expected_random_ndcg(20, 20))
    # Exhaustively: the mean NDCG@k over all 5! rankings with one positive equals the closed form.
    perms = np.array(list(itertools.permutations(range(5))), dtype=np.int32)
    relevance = np.broadcast_to(metrics.one_hot_relevance(2, 5), perms.shape)
    for k in range(1, 7):
        assert metrics.ndcg_at_k(perms, relevance, k).mean() == pytest.approx(metrics.expected_random_ndcg(k, 5), abs=1e-12)


def test_padding_equals_sub_problem() -> None:
    rng = np.random.default_rng(11)
    for _ in range(5):
        relevance = rng.integers(0, 4, size=9)
        mask = rng.random(9) < 0.6
        perm = rng.permutation(9)  # padding anywhere in the ranking
        real = np.flatnonzero(mask)
        sub_perm = np.array([np.flatnonzero(real == c)[0] for c in perm if mask[c]], dtype=np.int32)
        for cutoff in (1, 3, 10):
            assert metrics.ndcg_at_k(perm, relevance, cutoff, mask) == pytest.approx(
                metrics.ndcg_at_k(sub_perm, relevance[real], cutoff) if real.size else 0.0, abs=1e-12
            )


def test_jax_metrics_are_jittable_and_vmappable() -> None:
    perm, relevance, mask = _random_case(6, seed=3)

    @jax.jit
    def reward(p: jax.Array, r: jax.Array, m: jax.Array) -> jax.Array:
        return metrics.ndcg_at_k_jax(p, r, 10, m)

    eager = metrics.ndcg_at_k(perm, relevance, 10, mask)
    np.testing.assert_allclose(reward(perm, relevance, mask), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(reward)(perm, relevance, mask), eager, rtol=1e-6)


def test_x64_jax_metrics_match_numpy_exactly(x64: None) -> None:
    perm, relevance, mask = _random_case(20, seed=5)
    got = metrics.ndcg_at_k_jax(perm, relevance, 10, mask)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, metrics.ndcg_at_k(perm, relevance, 10, mask), rtol=1e-13)


def test_bad_inputs_raise_clear_errors() -> None:
    perm, relevance, mask = _random_case(6, seed=0)
    with pytest.raises(ValueError, match=">= 1"):
        metrics.ndcg_at_k(perm, relevance, 0)
    with pytest.raises(TypeError, match="int"):
        metrics.ndcg_at_k_jax(perm, relevance, 2.5)
    with pytest.raises(ValueError, match="relevance shape"):
        metrics.ndcg_at_k(perm, relevance[0], 5)
    with pytest.raises(ValueError, match="mask shape"):
        metrics.hit_rate_at_k_jax(perm, relevance, 5, mask[0])
    with pytest.raises(TypeError, match="integer"):
        metrics.mrr(perm.astype(float), relevance)
    with pytest.raises(TypeError, match="boolean"):
        metrics.mrr_jax(perm, relevance, None, mask.astype(int))
    with pytest.raises(ValueError, match="num_candidates"):
        metrics.expected_random_ndcg(10, 0)
    assert math.isfinite(metrics.expected_random_ndcg(1, 1))
