"""Confidence intervals against closed forms; the Wilcoxon wrapper against scipy; marker thresholds."""
import numpy as np
import pytest
from scipy import stats

from r2rank_jax.eval.confidence import bootstrap_ci, bootstrap_means, normal_ci
from r2rank_jax.eval.significance import compare_to_reference, marker, wilcoxon_p


def test_normal_ci_closed_form():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0])  # mean 5/8, sd (ddof=1) sqrt(15/56)
    half = 1.959963984540054 * np.sqrt(15 / 56) / np.sqrt(8)
    np.testing.assert_allclose(normal_ci(values), [5 / 8 - half, 5 / 8 + half], rtol=1e-12)


def test_bootstrap_of_binary_mean_matches_binomial_quantiles():
    # A resample of N Bernoulli values with k ones has Binomial(N, k/N) ones: the percentile interval
    # is the binomial quantiles / N, up to Monte Carlo error.
    n, ones = 400, 120
    values = np.zeros(n)
    values[:ones] = 1.0
    lo, hi = bootstrap_ci(values, num_resamples=20_000, seed=0)
    exact = stats.binom.ppf([0.025, 0.975], n, ones / n) / n
    assert lo == pytest.approx(exact[0], abs=1.5 / n)
    assert hi == pytest.approx(exact[1], abs=1.5 / n)
    means = bootstrap_means(values, 20_000, seed=0)
    assert means.mean() == pytest.approx(0.3, abs=1e-3)
    assert means.std() == pytest.approx(np.sqrt(0.3 * 0.7 / n), rel=0.03)


def test_bootstrap_is_seeded_columnwise_and_degenerate_for_constants():
    rng = np.random.default_rng(0)
    values = np.stack([rng.random(300), np.full(300, 0.25)], axis=1)
    a = bootstrap_ci(values, seed=3, num_resamples=2000)
    np.testing.assert_array_equal(a, bootstrap_ci(values, seed=3, num_resamples=2000))
    np.testing.assert_allclose(a[:, 1], [0.25, 0.25])
    np.testing.assert_allclose(a[:, 0], bootstrap_ci(values[:, 0], seed=3, num_resamples=2000))


def test_wilcoxon_matches_scipy_on_hand_cases():
    # Small, no zero differences: scipy's exact null distribution.
    a = np.array([0.63, 1.0, 0.5, 0.39, 1.0, 0.43, 0.1, 0.33, 0.9, 0.29, 0.61, 0.5])
    b = np.array([0.5, 0.63, 0.45, 0.29, 0.43, 0.39, 0.0, 0.5, 1.0, 0.0, 0.33, 0.25])
    expected = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue
    assert wilcoxon_p(a, b) == pytest.approx(expected, rel=1e-12)
    assert wilcoxon_p(b, a) == pytest.approx(expected, rel=1e-12)
    # Per-user NDCGs of two rankers: many users tie (zero differences are dropped), normal approximation.
    rng = np.random.default_rng(0)
    ranks_a, ranks_b = rng.integers(1, 21, 300), rng.integers(1, 21, 300)
    ranks_b[:150] = ranks_a[:150]
    ndcg_a, ndcg_b = (np.where(r <= 10, 1 / np.log2(r + 1), 0.0) for r in (ranks_a, ranks_b))
    expected = stats.wilcoxon(ndcg_a, ndcg_b, zero_method="wilcox").pvalue
    assert wilcoxon_p(ndcg_a, ndcg_b) == pytest.approx(expected, rel=1e-12)


def test_all_zero_differences_give_p_one():
    a = np.array([0.2, 0.5, 1.0])
    assert wilcoxon_p(a, a.copy()) == 1.0
    with pytest.raises(ValueError, match="same users"):
        wilcoxon_p(a, a[:2])


@pytest.mark.parametrize("p, sign", [(0.2, ""), (0.05, ""), (0.0499, "†"), (0.01, "†"), (0.0099, "‡"),
                                     (0.001, "‡"), (0.00099, "§"), (0.0, "§")])
def test_marker_thresholds(p, sign):
    assert marker(p) == sign


def test_compare_to_reference():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    per_user = {"ref": {"m": ref}, "better": {"m": ref + 0.1}, "same": {"m": ref}}
    out = compare_to_reference(per_user, "ref", ["m"])
    assert set(out) == {"better", "same"}
    assert out["better"]["m"]["marker"] == "§" and out["better"]["m"]["mean_diff"] == pytest.approx(0.1)
    assert out["same"]["m"] == {"p_value": 1.0, "marker": "", "mean_diff": 0.0}
    with pytest.raises(ValueError, match="reference"):
        compare_to_reference(per_user, "nope", ["m"])
