"""The SFT step benchmark runs end to end on a small batch; both layer loops, dense attention and the shared-prefix
path compute the same loss, and the shared-prefix path the same per-token log-probs and gradients as per-row."""
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.bench import sft_step
from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.train.sft import response_logprobs


def test_sft_step_bench_smoke(capsys):
    assert sft_step.main(["--batch", "2", "--prompt", "24", "--response", "8", "--vocab", "100",
                          "--repeats", "2", "--iters", "1", "--shared_prefix", "10"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    scan, unrolled, dense, shared = map(float, re.fullmatch(
        r"first-step loss: scan=(\S+) unrolled=(\S+) dense=(\S+) shared=(\S+)", lines[0]).groups())
    assert abs(scan - unrolled) < 1e-5 and abs(dense - unrolled) < 1e-5 and abs(shared - unrolled) < 1e-5
    assert 3.0 < scan < 6.0   # ~log(100) at init
    assert re.fullmatch(r"sft_step causal blocks s: dense=\d+\.\d{3} blocked=\d+\.\d{3} ratio=\d+\.\d\d", lines[-3])
    assert re.fullmatch(r"sft_step shared prefix s: per_row=\d+\.\d{3} shared=\d+\.\d{3} ratio=\d+\.\d\d "
                        r"prefix=10 rows_per_prefix=2", lines[-2]), lines[-2]
    assert re.fullmatch(r"sft_step s: scan=\d+\.\d{3} unrolled=\d+\.\d{3} ratio=\d+\.\d\d", lines[-1]), lines[-1]


def test_shared_prefix_equals_per_row_log_probs_and_gradients():
    """4 rows in 2 groups sharing their first 9 columns (left pads in one row's rest: position -1): the same
    response log-probs and parameter gradients as every row run whole."""
    cfg = ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=8)
    graphdef, params = nnx.split(Decoder(cfg, rngs=nnx.Rngs(1)), nnx.Param)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 50, (4, 20))
    tokens[1, :9], tokens[3, :9] = tokens[0, :9], tokens[2, :9]
    positions = np.tile(np.arange(20), (4, 1))
    positions[2, 9:12] = -1                   # a shorter prompt: pads after the shared part
    positions[2, 12:] = np.arange(9, 17)
    tokens, positions = jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32)

    def loss(p, shared):
        model = nnx.merge(graphdef, p)
        lp = (response_logprobs(model, tokens, positions, 6, shared_prefix=9, rows_per_prefix=2) if shared
              else response_logprobs(model, tokens, positions, 6))
        return jnp.sum(lp * jnp.arange(1, 7)), lp

    (_, want), g_want = jax.value_and_grad(loss, has_aux=True)(params, False)
    (_, got), g_got = jax.value_and_grad(loss, has_aux=True)(params, True)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    # A prefix that differs within a group is not what the shared path computes: the check can fail.
    other = tokens.at[1, 3].set((tokens[1, 3] + 1) % 50)
    wrong = response_logprobs(nnx.merge(graphdef, params), other, positions, 6, shared_prefix=9, rows_per_prefix=2)
    assert not np.allclose(np.asarray(wrong[1]), np.asarray(response_logprobs(nnx.merge(graphdef, params), other, positions, 6)[1]), atol=1e-5)
