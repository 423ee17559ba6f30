"""RL with a frozen LLM (the MLP-only ablation): θ untouched bitwise, the head's update equal to the
full step's (its gradient does not depend on θ's loss), and the PPO work is gone from the step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from rl_fixtures import TINY, make_batch

from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.head import ScoringHead

from r2rank_jax.train.rl import RLConfig, make_train_step
from r2rank_jax.train.state import create_train_state


def _filled(make, seed):
    """A module with random normal parameters drawn in NumPy (no eager JAX initializers to compile)."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    return graphdef, jax.tree.map(lambda x: np.asarray(0.1 * rng.standard_normal(x.shape), x.dtype), state)


def _state(models, seed=0):
    """A fresh train state over copies of `models`' parameters (the step donates its input state)."""
    model, head = (nnx.merge(d, jax.tree.map(jnp.asarray, s)) for d, s in models)
    return create_train_state(model, head, optax.sgd(1e-2), optax.sgd(1e-1), jax.random.PRNGKey(seed))


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def test_frozen_llm_updates_only_the_head():
    batch = make_batch(4, users=4, k=6)
    cfg = TINY.replace(num_layers=1)
    models = (_filled(lambda: Decoder(cfg, rngs=nnx.Rngs(0)), 0),
              _filled(lambda: ScoringHead(cfg.hidden_size, 32, rngs=nnx.Rngs(1)), 1))
    out = {}
    for freeze in (False, True):
        cfg = RLConfig(num_rankings=2, baseline="mean", advantage="item", microbatches=2, freeze_llm=freeze)
        static, state = _state(models)
        before = _copy(state)
        step = make_train_step(static, cfg).lower(state, batch).compile()
        flops = step.cost_analysis()
        flops = (flops[0] if isinstance(flops, list) else flops)["flops"]
        state, metrics = step(state, batch)
        out[freeze] = (before, _copy(state), metrics, flops)
    (b_full, s_full, m_full, f_full), (b_frozen, s_frozen, m_frozen, f_frozen) = out[False], out[True]
    for a, b in zip(jax.tree.leaves(b_frozen.llm) + jax.tree.leaves(b_frozen.llm_opt),
                    jax.tree.leaves(s_frozen.llm) + jax.tree.leaves(s_frozen.llm_opt)):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(b_full.llm), jax.tree.leaves(s_full.llm)))
    # Same head update as the full step (same rankings: same key; the head loss ignores θ's loss).
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(b_frozen.head), jax.tree.leaves(s_frozen.head)))
    for a, b in zip(jax.tree.leaves(s_full.head), jax.tree.leaves(s_frozen.head)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(m_frozen["loss_phi"], m_full["loss_phi"], rtol=1e-6)
    assert float(m_frozen["grad_norm_llm"]) == 0.0 and float(m_full["grad_norm_llm"]) > 0
    assert float(m_frozen["loss_theta"]) == 0.0 and int(m_frozen["skipped"]) == 0
    # No θ backward pass, no vocabulary log-probs: a fraction of the full step's work.
    assert f_frozen < 0.5 * f_full, (f_frozen, f_full)
