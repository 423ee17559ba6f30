"""Scoring head f_φ: position choice, stop-gradient, separate parameter collection."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.models.head import ScoringHead, last_real_index, score_sequences


def test_last_real_index_and_scores_at_that_position():
    positions = jnp.asarray([[-1, -1, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, -1, -1, -1]])
    np.testing.assert_array_equal(last_real_index(positions), [4, 4, 1])
    head = ScoringHead(6, 8, rngs=nnx.Rngs(0))
    head.w2[...] = jax.random.normal(jax.random.key(1), head.w2.shape)  # non-trivial output layer
    hidden = jax.random.normal(jax.random.key(2), (3, 5, 6))
    s = score_sequences(head, hidden, positions)
    expect = [head(hidden[0, 4]), head(hidden[1, 4]), head(hidden[2, 1])]
    np.testing.assert_allclose(s, jnp.stack(expect), rtol=1e-6)
    s_at = score_sequences(head, hidden, positions, index=jnp.asarray([2, 0, 0]))
    np.testing.assert_allclose(s_at, jnp.stack([head(hidden[0, 2]), head(hidden[1, 0]), head(hidden[2, 0])]), rtol=1e-6)


def test_new_head_scores_zero_and_learns_through_its_own_parameters():
    head = ScoringHead(4, 8, rngs=nnx.Rngs(0))
    h = jax.random.normal(jax.random.key(0), (5, 4))
    np.testing.assert_array_equal(head(h), np.zeros(5))  # uniform initial ranking policy
    _, params = nnx.split(head, nnx.Param)
    assert sorted(nnx.to_pure_dict(params)) == ["b1", "b2", "w1", "w2"]
    grads = nnx.grad(lambda m: jnp.sum(m(h) * jnp.arange(5.0)))(head)
    assert float(jnp.abs(grads.w2[...]).sum()) > 0


def test_stop_gradient_holds_the_hidden_state_fixed():
    head = ScoringHead(4, 8, rngs=nnx.Rngs(0))
    head.w2[...] = jnp.ones(head.w2.shape)
    positions = jnp.asarray([[0, 1, 2]])
    hidden = jax.random.normal(jax.random.key(0), (1, 3, 4))
    flows = jax.grad(lambda x: score_sequences(head, x, positions).sum())(hidden)
    held = jax.grad(lambda x: score_sequences(head, x, positions, stop_gradient=True).sum())(hidden)
    assert float(jnp.abs(flows[0, 2]).sum()) > 0 and float(jnp.abs(flows[0, :2]).sum()) == 0
    assert float(jnp.abs(held).sum()) == 0
