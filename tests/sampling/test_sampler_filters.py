"""Token choice: truncated distributions (chi-square), greedy, inverse-CDF edge cases, the wide-nucleus fallback."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from r2rank_jax.sampling.filters import argmax, choose_tokens, inverse_cdf
from r2rank_jax.sampling.params import SamplingParams

LOGITS = np.log(np.array([0.30, 0.22, 0.15, 0.12, 0.08, 0.06, 0.04, 0.03], np.float32))
ROWS = 20000


def truncated(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Reference (transformers order): temperature, top-k, top-p on the renormalized top-k set."""
    z = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-z)
    keep = np.zeros_like(z, bool)
    keep[order[:top_k or len(z)]] = True
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    cum_before = np.cumsum(p[order]) - p[order]
    nucleus = np.zeros_like(keep)
    nucleus[order[cum_before < top_p]] = True
    p = np.where(keep & nucleus, p, 0.0)
    return p / p.sum()


def draw(params_kw, num_candidates=64, logits=LOGITS, seed=0):
    params = SamplingParams.make(ROWS, **params_kw)
    tokens, logprobs = jax.jit(choose_tokens, static_argnums=3)(
        jnp.tile(jnp.asarray(logits), (ROWS, 1)), params, jax.random.key(seed), num_candidates)
    return np.asarray(tokens), np.asarray(logprobs)


@pytest.mark.parametrize("kw", [dict(), dict(top_k=3), dict(top_p=0.6), dict(temperature=0.7, top_k=5, top_p=0.8),
                                dict(temperature=1.6, top_p=0.9)])
def test_frequencies_match_truncated_distribution(kw):
    expect = truncated(LOGITS, **kw)
    tokens, logprobs = draw(kw)
    counts = np.bincount(tokens, minlength=len(LOGITS))
    assert counts[expect == 0].sum() == 0, "a truncated token was drawn"
    support = expect > 0
    _, p_value = stats.chisquare(counts[support], ROWS * expect[support])
    assert p_value > 1e-3, (counts, ROWS * expect)
    np.testing.assert_allclose(logprobs, np.log(expect[tokens]), atol=1e-5)


def test_wide_nucleus_falls_back_to_the_full_vocabulary():
    """With only 2 prefiltered candidates, a 0.9 nucleus (5 tokens) still comes out exact."""
    kw = dict(top_p=0.9)
    expect = truncated(LOGITS, **kw)
    tokens, _ = draw(kw, num_candidates=2)
    counts = np.bincount(tokens, minlength=len(LOGITS))
    assert counts[expect == 0].sum() == 0
    _, p_value = stats.chisquare(counts[expect > 0], ROWS * expect[expect > 0])
    assert p_value > 1e-3


def test_greedy_rows_take_the_argmax_with_model_logprob():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 50)).astype(np.float32)
    params = SamplingParams.make(6, temperature=[0, 0, 0, 1, 0.5, 0], top_p=[1, 0.5, 1, 1, 1, 0.3], top_k=[0, 0, 3, 0, 0, 2])
    tokens, logprobs = choose_tokens(jnp.asarray(logits), params, jax.random.key(0), 64)
    greedy = np.asarray(params.temperature) == 0
    np.testing.assert_array_equal(np.asarray(tokens)[greedy], logits.argmax(1)[greedy])
    ref = jax.nn.log_softmax(logits)[np.arange(6), np.asarray(tokens)]
    np.testing.assert_allclose(np.asarray(logprobs)[greedy], np.asarray(ref)[greedy], atol=1e-6)


def test_argmax_matches_jnp_argmax_with_ties():
    x = jnp.asarray([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0], [-1.0, -2.0, -3.0, -0.5]])
    np.testing.assert_array_equal(argmax(x), jnp.argmax(x, axis=1))


def test_inverse_cdf_never_picks_zero_weight():
    w = np.zeros((4, 700), np.float32)
    w[0, 0] = 1.0        # first token only
    w[1, 699] = 1.0      # last token, last (partial) block
    w[2, [256, 300]] = [1e-30, 1.0]
    w[3, 513] = 2.0
    u = jnp.asarray([0.999999, 0.999999, 0.0, 0.5], jnp.float32)
    np.testing.assert_array_equal(inverse_cdf(jnp.asarray(w), u), [0, 699, 256, 513])
    u = jnp.full((4,), 1.0 - 2 ** -24, jnp.float32)
    np.testing.assert_array_equal(inverse_cdf(jnp.asarray(w), u), [0, 699, 300, 513])


def test_invalid_params_are_errors():
    for kw in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-2)):
        with pytest.raises(ValueError):
            SamplingParams.make(3, **kw)
