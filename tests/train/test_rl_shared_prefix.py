"""The shared-prefix training forward equals K brute-force full sequences, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from rl_fixtures import make_batch, tiny_models

from r2rank_jax.train.rl_batch import continuation_hidden, decision_hidden, rationale_inputs
from r2rank_jax.train.token_logprobs import token_logprobs


def _objective(llm, head_params, graphs, batch, shared):
    model, head = nnx.merge(graphs[0], llm), nnx.merge(graphs[1], head_params)
    hidden = continuation_hidden(model, batch, shared_prefix=shared)
    h, t = rationale_inputs(hidden, batch)
    logp, _ = token_logprobs(model, h, t, chunk=3)
    scores = head(decision_hidden(hidden, batch))
    w = jnp.linspace(0.5, 1.5, logp.size).reshape(logp.shape)
    return jnp.sum(jnp.where(batch.response_mask.reshape(logp.shape), logp * w, 0.0)) + jnp.sum(scores * 0.3)


def test_shared_prefix_matches_brute_force_values_and_gradients():
    model, head = tiny_models(0)
    head.w2[...] = jax.random.normal(jax.random.key(5), head.w2.shape)
    graphs = (nnx.split(model)[0], nnx.split(head)[0])
    llm, head_params = nnx.split(model)[1], nnx.split(head)[1]
    batch = make_batch(0, users=2, k=4)
    f = jax.jit(jax.value_and_grad(_objective, argnums=(0, 1)), static_argnums=(2, 4))
    v_shared, g_shared = f(llm, head_params, graphs, batch, True)
    v_full, g_full = f(llm, head_params, graphs, batch, False)
    np.testing.assert_allclose(v_shared, v_full, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_shared), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    # the prefix really receives gradient (through the K branches' attention)
    assert float(jnp.abs(g_shared[0]["embed"][...]).sum()) > 0


def test_chunked_token_logprobs_equal_full_log_softmax():
    model, _ = tiny_models(1)
    h = jax.random.normal(jax.random.key(0), (3, 7, 32))
    t = jax.random.randint(jax.random.key(1), (3, 7), 0, 40)
    logp, ent = token_logprobs(model, h, t, temperature=0.7, chunk=3)
    full = jax.nn.log_softmax(model.logits(h) / 0.7, axis=-1)
    np.testing.assert_allclose(logp, jnp.take_along_axis(full, t[..., None], -1)[..., 0], atol=1e-5)
    np.testing.assert_allclose(ent, -jnp.sum(jnp.exp(full) * full, -1), atol=1e-5)
