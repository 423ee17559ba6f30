"""The jitted RL train_step: learning, compile-once, microbatching, non-finite guard, sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rl_fixtures import make_batch, on_policy_logprobs, tiny_models

from r2rank_jax.mesh import batch_sharding, make_mesh
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores
from r2rank_jax.train.rl import RLConfig, candidate_scores, make_train_step
from r2rank_jax.train.state import create_train_state, state_shardings


def _setup(cfg: RLConfig, seed=0, llm_lr=1e-3, head_lr=1e-2, mesh=None, sgd=False):
    """sgd=True for equality tests: Adam's first step turns float noise in an exactly-zero gradient
    (e.g. the head's output bias, to which Plackett-Luce is invariant) into a full ±lr step."""
    model, head = tiny_models(seed)
    if sgd:
        llm_tx, head_tx = optax.sgd(llm_lr), optax.sgd(head_lr)
    else:
        llm_tx = make_optimizer(OptimConfig(learning_rate=llm_lr))
        head_tx = make_optimizer(OptimConfig(learning_rate=head_lr))
    return create_train_state(model, head, llm_tx, head_tx, jax.random.PRNGKey(seed), mesh)


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


@pytest.mark.parametrize("cfg", [RLConfig(advantage="listwise"),  # the paper: M = 1, A = ρ(τ)
                                 RLConfig(advantage="item", num_rankings=4, baseline="mean")],
                         ids=["listwise", "item"])
def test_train_step_learns_a_text_identifiable_positive(cfg):
    static, state = _setup(cfg)
    step = make_train_step(static, cfg)
    policy_logprobs = jax.jit(lambda llm, b: on_policy_logprobs(static.models(llm, state.head)[0], b))
    scores = jax.jit(lambda s, b: candidate_scores(static, s.llm, s.head, b))
    held_out = [make_batch(10_000 + i, users=4, k=20) for i in range(3)]

    def held_out_ndcg(s):
        return float(np.mean([ndcg_at_k_from_scores(np.asarray(scores(s, b)), np.asarray(b.relevance), 10)
                              for b in held_out]))

    before = held_out_ndcg(state)
    assert before < 0.45  # near random: an untrained head scores every candidate 0
    for i in range(100):
        batch = make_batch(i, users=4, k=20)
        batch = batch.replace(old_logprobs=jnp.where(batch.response_mask, policy_logprobs(state.llm, batch), 0.0))
        state, metrics = step(state, batch)
        assert int(metrics["skipped"]) == 0
        if i == 0:
            assert float(metrics["grad_norm_llm"]) > 0 and float(metrics["grad_norm_head"]) > 0
        if i >= 10 and i % 10 == 0 and held_out_ndcg(state) >= 0.9:
            break
    after = held_out_ndcg(state)
    assert after >= 0.8, (before, after)
    assert step._cache_size() == 1  # compiled once over all steps


def test_microbatching_matches_one_batch():
    batch = make_batch(3, users=4, k=6)
    results = []
    for micro in (1, 2):
        cfg = RLConfig(num_rankings=3, baseline="mean", advantage="item", microbatches=micro)
        static, state = _setup(cfg, seed=1, sgd=True)
        state, metrics = make_train_step(static, cfg)(state, batch)
        results.append((metrics, _copy(state.llm), _copy(state.head)))
    (m1, l1, h1), (m2, l2, h2) = results
    for name in ("loss", "reward", "grad_norm_llm", "grad_norm_head", "clip_frac"):
        np.testing.assert_allclose(m1[name], m2[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(l1) + jax.tree.leaves(h1), jax.tree.leaves(l2) + jax.tree.leaves(h2)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_non_finite_loss_leaves_state_untouched():
    cfg = RLConfig()
    static, state = _setup(cfg)
    step = make_train_step(static, cfg)
    before = _copy(state)
    bad = make_batch(0, users=2, k=4)
    bad = bad.replace(old_logprobs=bad.old_logprobs.at[0, 0, 0].set(jnp.nan))
    state, metrics = step(state, bad)
    assert int(metrics["skipped"]) == 1
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(_copy(state))):
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, make_batch(1, users=2, k=4))
    assert int(metrics["skipped"]) == 0 and int(state.step) == 1


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 simulated devices")
def test_sharded_step_equals_single_device():
    cfg = RLConfig(num_rankings=2, baseline="loo_users")
    batch = make_batch(5, users=4, k=6)
    static, state = _setup(cfg, seed=2, sgd=True)
    state, m_single = make_train_step(static, cfg)(state, batch)
    single = _copy(state)

    mesh = make_mesh("data:2,fsdp:2,tensor:2")
    static, state = _setup(cfg, seed=2, mesh=mesh, sgd=True)
    assert not state.llm["layers"][0]["attn"]["q_proj"][...].sharding.is_fully_replicated
    sharded_batch = jax.tree.map(lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim)), batch)
    step = make_train_step(static, cfg, state_sharding=state_shardings(state), mesh=mesh)
    state, m_sharded = step(state, sharded_batch)
    np.testing.assert_allclose(m_single["loss"], m_sharded["loss"], atol=1e-5)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(_copy(state))):
        np.testing.assert_allclose(a, b, atol=1e-5)
