"""The RL objectives against hand-computed values and brute-force references."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from r2rank_jax.ranking import plackett_luce as pl
from r2rank_jax.train import losses


def test_ppo_token_objective_hand_computed():
    new = jnp.log(jnp.asarray([[[1.5, 0.5, 1.1, 1.0]]]))      # ratios γ against old = 0
    old = jnp.zeros((1, 1, 4))
    mask = jnp.asarray([[[True, True, True, False]]])
    for a in (2.0, -2.0):
        obj, stats = losses.ppo_token_objective(new, old, jnp.full((1, 1, 1), a), mask, clip_eps=0.2)
        # min(γA, clip(γ, 0.8, 1.2)A)
        expect = [min(g * a, min(max(g, 0.8), 1.2) * a) for g in (1.5, 0.5, 1.1)] + [0.0]
        np.testing.assert_allclose(obj[0, 0], expect, rtol=1e-6)
        np.testing.assert_array_equal(stats["clipped"][0, 0], [True, True, False, False])


def test_ppo_averages_over_rankings_after_the_min():
    new, old = jnp.log(jnp.full((1, 1, 1), 1.5)), jnp.zeros((1, 1, 1))
    adv = jnp.asarray([1.0, -1.0]).reshape(2, 1, 1)                # two rankings, opposite advantages
    obj, _ = losses.ppo_token_objective(new, old, adv, jnp.ones((1, 1, 1), bool), 0.2)
    np.testing.assert_allclose(obj, np.full((1, 1, 1), (min(1.5, 1.2) - 1.5) / 2), rtol=1e-6)


def test_reinforce_gradient_is_reward_weighted_score_function():
    scores = jnp.asarray([[0.3, -1.0, 2.0, 0.5]])
    perms = jnp.asarray([[[2, 0, 3, 1]], [[0, 1, 2, 3]]])          # [M=2, U=1, K=4]
    rewards = jnp.asarray([[0.9], [0.2]])
    mask = jnp.ones((1, 4), bool)
    for kind, b in (("none", 0.0), ("mean", 0.55)):
        base = losses.reward_baseline(rewards, kind)
        np.testing.assert_allclose(base, [b], rtol=1e-6)
        g = jax.grad(lambda s: losses.reinforce_loss(s, perms, rewards, base, mask))(scores)
        expect = -sum((rewards[m, 0] - b) * pl.score_function(scores, perms[m], mask) for m in range(2)) / 2
        np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-7)


def test_item_advantages_equal_mean_reward_weighted_log_prob_gradient():
    key = jax.random.PRNGKey(0)
    scores = jax.random.normal(key, (3, 5))
    mask = jnp.ones((3, 5), bool).at[2, 4].set(False)
    perms = losses.sample_rankings(key, jnp.arange(3), scores, 6, mask)
    rel = jnp.zeros((3, 5)).at[:, 1].set(1.0)
    rewards = losses.ranking_rewards(perms, rel, mask, 10)
    base = losses.reward_baseline(rewards, "mean")
    adv = losses.item_advantages(scores, perms, rewards, base, mask)[0]
    brute = jnp.mean(jnp.stack([
        (rewards[m] - base)[:, None] * jax.grad(lambda s: jnp.sum(pl.log_prob(s, perms[m], mask)))(scores)
        for m in range(6)]), axis=0)
    np.testing.assert_allclose(adv, brute, atol=1e-5)
    assert float(jnp.abs(adv[2, 4])) == 0.0   # a padded candidate gets no credit


def test_rewards_are_ndcg_of_each_sampled_ranking():
    rel = jnp.asarray([[0.0, 1.0, 0.0]])
    perms = jnp.asarray([list(p) for p in itertools.permutations(range(3))])[:, None]   # [6, 1, 3]
    r = losses.ranking_rewards(perms, rel, jnp.ones((1, 3), bool), 10)
    rank_of_pos = [list(p).index(1) for p in itertools.permutations(range(3))]
    np.testing.assert_allclose(r[:, 0], [1 / np.log2(i + 2) for i in rank_of_pos], rtol=1e-6)


def test_ranking_draws_do_not_depend_on_batch_split():
    key = jax.random.PRNGKey(3)
    scores = jax.random.normal(key, (4, 6))
    mask = jnp.ones((4, 6), bool)
    whole = losses.sample_rankings(key, jnp.arange(4), scores, 3, mask)
    halves = [losses.sample_rankings(key, jnp.arange(2) + 2 * i, scores[2 * i:2 * i + 2], 3, mask[:2]) for i in range(2)]
    np.testing.assert_array_equal(whole, jnp.concatenate(halves, axis=1))


def test_batch_shape_errors_name_the_field():
    import pytest
    from rl_fixtures import make_batch

    batch = make_batch(0, users=2, k=4)
    batch.check_shapes()
    with pytest.raises(AssertionError, match="RLBatch per-candidate fields"):
        batch.replace(relevance=batch.relevance[:, :3]).check_shapes()
    with pytest.raises(AssertionError, match="RLBatch masks"):
        batch.replace(response_mask=batch.response_mask.astype(jnp.int32)).check_shapes()
