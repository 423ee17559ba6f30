"""Per-user metrics: the expected-value tie policy is exact (vs enumerating every tie order), matches
the deterministic metrics without ties, and puts random/constant scorers at the random expectation."""
import itertools

import numpy as np
import pytest

from r2rank_jax.eval.per_user import METRICS, per_user_metrics, tie_summary
from r2rank_jax.eval.report import random_expectation
from r2rank_jax.ranking import metrics as rk


def _brute_force_expected(scores, relevance):
    """Average of the stable-rank metrics over every permutation of the candidates (K small)."""
    k = scores.shape[1]
    perms = list(itertools.permutations(range(k)))
    total = {m: np.zeros(scores.shape[0]) for m in METRICS}
    for perm in perms:
        perm = np.array(perm)
        # Permuting the candidate order makes the stable tie-break a uniformly random one.
        out = per_user_metrics(scores[:, perm], relevance=relevance[:, perm], ties="stable")
        for m in METRICS:
            total[m] += out[m] / len(perms)
    return total


def test_expected_ties_equal_average_over_all_tie_orders():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(40, 6)).astype(float)
    relevance = (rng.random((40, 6)) < 0.3).astype(int)
    relevance[:3] = 0
    relevance[3:6] = rng.integers(0, 3, size=(3, 6))  # graded rows too
    expected = per_user_metrics(scores, relevance=relevance)
    brute = _brute_force_expected(scores, relevance)
    for m in METRICS:
        np.testing.assert_allclose(expected[m], brute[m], atol=1e-12, err_msg=m)


def test_without_ties_both_policies_match_ranking_metrics():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 20))
    positive = rng.integers(0, 20, size=50)
    a = per_user_metrics(scores, positive)
    b = per_user_metrics(scores, positive, ties="stable")
    rel = rk.one_hot_relevance(positive, 20)
    for m in METRICS:
        np.testing.assert_allclose(a[m], b[m], atol=1e-12)
    np.testing.assert_allclose(a["ndcg@10"], rk.ndcg_at_k_from_scores(scores, rel, 10))
    np.testing.assert_allclose(a["mrr"], rk.mrr_from_scores(scores, rel))


def test_constant_scorer_is_exactly_random_and_stable_is_not():
    positive = np.zeros(100, dtype=int)  # positive listed first: the stable tie-break would put it on top
    scores = np.zeros((100, 20))
    expected = per_user_metrics(scores, positive)
    rnd = random_expectation(20)
    for m in METRICS:
        np.testing.assert_allclose(expected[m], rnd[m], atol=1e-12)
    assert rnd["ndcg@10"] == pytest.approx(0.2272, abs=1e-4)
    assert per_user_metrics(scores, positive, ties="stable")["ndcg@10"].mean() == 1.0


def test_random_scorer_near_random_expectation_on_many_users():
    rng = np.random.default_rng(2)
    n = 20_000
    values = per_user_metrics(rng.random((n, 20)), rng.integers(0, 20, n))
    rnd = random_expectation(20)
    for m in METRICS:
        se = values[m].std() / np.sqrt(n)
        assert abs(values[m].mean() - rnd[m]) < 4 * se, m


def test_mask_drops_padding():
    scores = np.array([[0.9, 5.0, 0.5, 0.1]])
    mask = np.array([[True, False, True, True]])
    out = per_user_metrics(scores, np.array([0]), mask=mask)
    assert out["ndcg@1"][0] == 1.0 and out["mrr"][0] == 1.0
    tied = per_user_metrics(np.zeros((1, 4)), np.array([0]), mask=mask)
    assert tied["hr@1"][0] == pytest.approx(1 / 3)


def test_tie_summary_and_errors():
    scores = np.array([[1.0, 1.0, 0.0], [3.0, 2.0, 1.0], [0.0, 2.0, 2.0]])
    assert tie_summary(scores, np.array([0, 0, 0])) == {"users_with_ties": 2, "users_with_tied_positive": 1}
    with pytest.raises(ValueError, match="row 1, candidate 2"):
        per_user_metrics(np.array([[0.0, 1.0, 2.0], [0.0, 1.0, np.nan]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="exactly one"):
        per_user_metrics(scores)
    with pytest.raises(ValueError, match="row 2"):
        per_user_metrics(scores, np.array([0, 1, 3]))
