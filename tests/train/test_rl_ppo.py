"""PPO for real (issue 19): E epochs x B minibatches per rollout batch in one compiled step; the clip binds
and clipped tokens get no gradient; ppo_epochs=1 is the one-update step; baselines by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rl_fixtures import make_batch, on_policy_logprobs, tiny_models

from r2rank_jax.train import losses
from r2rank_jax.train.rl import RLConfig, make_train_step
from r2rank_jax.train.state import create_train_state


def _setup(seed=0, llm_lr=3e-2, head_lr=1e-2):
    model, head = tiny_models(seed)
    return create_train_state(model, head, optax.sgd(llm_lr), optax.sgd(head_lr), jax.random.PRNGKey(seed))


def _on_policy(static, state, batch):
    logp = jax.jit(lambda llm, b: on_policy_logprobs(static.models(llm, state.head)[0], b))(state.llm, batch)
    return batch.replace(old_logprobs=logp)


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("advantage,baseline", [("item", "mean"), ("listwise", "loo_users")])
def test_one_epoch_one_minibatch_through_the_passes_is_the_plain_step(advantage, baseline):
    cfg = RLConfig(advantage=advantage, num_rankings=4, baseline=baseline, microbatches=2)
    batch = make_batch(1, users=4, k=6)
    static, state = _setup()
    plain, m1 = make_train_step(static, cfg)(state, batch)
    static, state = _setup()
    passes, m2 = make_train_step(static, cfg, multi_pass=True)(state, batch)
    for a, b in zip(jax.tree.leaves((plain.llm, plain.head)), jax.tree.leaves((passes.llm, passes.head))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(plain.step) == int(passes.step) == 1
    for name in ("loss", "reward", "clip_frac", "approx_kl", "tokens"):
        np.testing.assert_allclose(float(m1[name]), float(m2[name]), rtol=1e-5, atol=1e-7, err_msg=name)


def test_several_epochs_bind_the_clip_and_count_one_step():
    cfg = RLConfig(advantage="item", num_rankings=4, baseline="mean", clip_eps=0.05, ppo_epochs=4, ppo_minibatches=2)
    static, state = _setup()
    batch = _on_policy(static, state, make_batch(2, users=4, k=6))
    step0, llm0 = int(state.step), jax.tree.map(np.array, state.llm)      # the state is donated
    new, metrics = make_train_step(static, cfg)(state, batch)
    assert int(new.step) == step0 + 1                      # E·B updates are one train step
    assert float(metrics["clip_frac"]) > 0.0               # later passes move the policy past 1 ± ε
    assert float(metrics["ratio_max"]) > 1.05
    assert int(metrics["skipped"]) == 0
    assert not _leaves_equal(new.llm, llm0)


def test_clipped_tokens_get_zero_gradient():
    # min(γA, clip(γ)A): with A > 0 and γ > 1 + ε the clipped branch is constant in θ → zero gradient.
    new = jnp.log(jnp.asarray([[[1.5, 1.0, 0.5]]]))       # ratios 1.5 (clipped), 1.0, 0.5 (A > 0: not clipped)
    old = jnp.zeros_like(new)
    mask = jnp.ones(new.shape, bool)
    adv = jnp.ones((1, 1, 1))
    grad = jax.grad(lambda n: jnp.sum(losses.ppo_token_objective(n, old, adv, mask, 0.2)[0]))(new)
    np.testing.assert_allclose(np.asarray(grad)[0, 0], [0.0, 1.0, 0.5], rtol=1e-6)   # d(γ)/d(log γ) = γ
    _, stats = losses.ppo_token_objective(new, old, adv, mask, 0.2)
    assert np.asarray(stats["clipped"]).tolist() == [[[True, False, True]]]


def test_baselines_by_hand():
    rewards = jnp.asarray([[0.2, 0.6, 1.0], [0.4, 0.0, 0.5]])          # [M=2, U=3]
    np.testing.assert_allclose(losses.reward_baseline(rewards, "none"), [0, 0, 0])
    np.testing.assert_allclose(losses.reward_baseline(rewards, "mean"), [0.3, 0.3, 0.75], rtol=1e-6)
    # per-user means 0.3, 0.3, 0.75; leave-one-out: (0.3+0.75)/2, (0.3+0.75)/2, (0.3+0.3)/2
    np.testing.assert_allclose(losses.reward_baseline(rewards, "loo_users"), [0.525, 0.525, 0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 users"):
        losses.reward_baseline(rewards[:, :1], "loo_users")
    # Eq. 6 listwise advantages: every candidate of user u gets ρ_mu − b_u.
    adv = losses.listwise_advantages(rewards, losses.reward_baseline(rewards, "loo_users"), 2)
    np.testing.assert_allclose(adv[1, 2], [0.2, 0.2], rtol=1e-6)


def test_listwise_with_a_per_user_mean_is_refused():
    with pytest.raises(ValueError, match="zero gradient"):
        RLConfig(advantage="listwise", baseline="mean")
    RLConfig(advantage="listwise", baseline="mean", freeze_llm=True)   # θ frozen: only the head, fine
    RLConfig(advantage="listwise", baseline="loo_users")
