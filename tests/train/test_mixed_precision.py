"""Mixed precision: one SFT and one RL step with bfloat16 matmuls (float32 master weights and optimizer
state) agree with the float32 step; pure bfloat16 keeps params and optimizer moments in bfloat16.

Tolerances come from measurements on this model (docs/precision_lora.md, AdamW lr 1e-3): bf16 compute
moved the loss by 8.5e-6 (SFT) and 8.9e-5 (RL) relative, the gradient norm by 2.5e-5 / 5.5e-4, and
flipped the sign of ~0.2% of the updates (entries with a near-zero gradient, where Adam's first step
is ±lr either way), a relative L2 distance of 0.09 / 0.06 between the update vectors. Bounds: loss
1e-3 relative (11x the largest measured; a quarter of bf16 unit roundoff 2^-8), gradient norm 1e-2, signs >= 99%,
update distance <= 0.2; pure bf16 (measured 98.9% / 98.2% signs, distance 0.14 / 0.12): >= 97%, <= 0.3.
Lost updates break them: pure bf16 at lr 1e-6 leaves ~98% of the weights unchanged (signs 4.5%).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r2rank_jax.models.decoder import Decoder
from r2rank_jax.train import sft_data
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.rl import RLConfig, make_train_step
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch
from r2rank_jax.train.state import create_train_state
from rl_fixtures import TINY, make_batch, tiny_models
from sft_fixtures import random_examples

LR = 1e-3
SMALL = TINY.replace(num_layers=1)


def _state(param_dtype: str, compute_dtype: str, lr: float = LR):
    """The same float32 initialization for every precision, stored in `param_dtype`."""
    model, head = tiny_models(0, SMALL)
    cfg = SMALL.replace(param_dtype=param_dtype, compute_dtype=compute_dtype)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    model = nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(param_dtype), nnx.state(model)))
    tx = make_optimizer(OptimConfig(learning_rate=lr))
    return create_train_state(model, head, tx, tx, jax.random.PRNGKey(0))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


@functools.cache
def _run(kind: str, param_dtype: str, compute_dtype: str, lr: float = LR):
    """(loss, grad norm, update Δθ, new state) of one step from the shared initialization."""
    static, state = _state(param_dtype, compute_dtype, lr)
    before = _flat(state.llm)
    if kind == "sft":
        batch = put_batch(sft_data.Collate(8, (8, 16), (4, 8), pad_id=0)(random_examples(8, seed=0)))
        state, m = make_sft_step(static, SFTConfig())(state, batch)
        gnorm = float(m["grad_norm"])
    else:
        cfg = RLConfig(num_rankings=2, baseline="mean", advantage="item")
        state, m = make_train_step(static, cfg)(state, make_batch(0, users=4, k=5))
        gnorm = float(m["grad_norm_llm"])
    assert int(m["skipped"]) == 0
    return float(m["loss"]), gnorm, _flat(state.llm) - before, state


def _agreement(update: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(fraction of entries with the reference's sign, relative L2 distance) of two update vectors."""
    return (float(np.mean(np.sign(update) == np.sign(reference))),
            float(np.linalg.norm(update - reference) / np.linalg.norm(reference)))


@pytest.mark.parametrize("kind", ["sft", "rl"])
def test_bf16_compute_step_matches_float32_and_keeps_float32_master_state(kind):
    loss32, gnorm32, update32, _ = _run(kind, "float32", "float32")
    loss16, gnorm16, update16, state = _run(kind, "float32", "bfloat16")
    assert abs(loss16 - loss32) <= 1e-3 * abs(loss32), (loss16, loss32)
    assert abs(gnorm16 - gnorm32) <= 1e-2 * gnorm32, (gnorm16, gnorm32)
    sign, distance = _agreement(update16, update32)
    assert sign >= 0.99 and distance <= 0.2, (sign, distance)
    assert np.abs(update16).max() <= LR * 1.001  # AdamW's first step is at most lr per entry
    floats = [x for x in jax.tree.leaves((state.llm, state.llm_opt)) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and {str(x.dtype) for x in floats} == {"float32"}


def test_pure_bf16_keeps_params_and_optimizer_state_in_bf16():
    loss32, _, update32, _ = _run("sft", "float32", "float32")
    loss, _, update, state = _run("sft", "bfloat16", "bfloat16")
    assert abs(loss - loss32) <= 1e-3 * abs(loss32)
    floats = [x for x in jax.tree.leaves((state.llm, state.llm_opt)) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert {str(x.dtype) for x in floats} == {"bfloat16"}
    # At lr 1e-3 the bf16 weights still follow the float32 update (at lr 1e-6 they mostly would not move).
    sign, distance = _agreement(update, update32)
    assert sign >= 0.97 and distance <= 0.3, (sign, distance)
