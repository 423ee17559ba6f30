"""R2Rec's jitted GRPO step over sampled outputs laid out like SFT batches (`train/sft_data.Collate`).

A batch: ``tokens``/``positions`` `[B, P+R]` (prompt left-padded, the sampled output right-padded),
``loss_mask`` `[B, R]`, ``example_mask`` `[B]`, ``advantages`` `[B]` float32 (the group-relative
advantage of each output, `r2rec_rewards.group_advantages`; B = users × G).

Objective (GRPO, no KL): per token the clipped ratio objective of `train.losses.ppo_token_objective`
(min(γA, clip(γ, 1−ε, 1+ε)A)), averaged over each output's tokens, then over the outputs. One update
per rollout batch: the old policy is the current one, so ``old_logp`` is the stop-gradient of the new
log-probabilities (γ = 1 in value; the gradient is the clipped objective's at γ = 1). Only θ (or its
LoRA adapters) trains; a non-finite loss or gradient leaves the state untouched (``skipped``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.train.losses import ppo_token_objective
from r2rank_jax.train.sft import response_logprobs
from r2rank_jax.train.state import Static, TrainState, guarded_llm_update, jit_step

KEYS = ("tokens", "positions", "loss_mask", "example_mask", "advantages")


def grpo_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, mask: jax.Array, clip_eps: float
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """logp, old_logp, mask `[B, R]`, advantages `[B]` → (loss scalar, stats). Rows without tokens count 0."""
    obj, stats = ppo_token_objective(logp[:, None], old_logp[:, None], advantages[None, :, None], mask[:, None],
                                     clip_eps)
    obj = obj[:, 0]                                                         # [B, R]
    tokens = jnp.sum(mask, axis=1)
    per_output = jnp.sum(obj, axis=1) / jnp.maximum(tokens, 1)
    rows = jnp.sum(tokens > 0)
    loss = -jnp.sum(per_output) / jnp.maximum(rows, 1)
    return loss, {"clip_frac": jnp.sum(stats["clipped"]) / jnp.maximum(jnp.sum(mask), 1)}


def make_grpo_step(static: Static, clip_eps: float, state_sharding: Any = None, mesh=None,
                   logit_chunk: int = 64) -> Callable:
    """``step(state, batch) -> (state, metrics)`` (module docstring), jitted, state donated."""

    def loss_fn(trained, frozen, batch):
        model = nnx.merge(static.llm_def, static.merge_llm(trained, frozen))
        mask = batch["loss_mask"] & batch["example_mask"][:, None]
        logp = response_logprobs(model, batch["tokens"], batch["positions"], mask.shape[1], logit_chunk)
        return grpo_loss(logp, jax.lax.stop_gradient(logp), batch["advantages"], mask, clip_eps)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        batch = {k: batch[k] for k in KEYS}
        trained, frozen = static.split_llm(state.llm)
        (loss, stats), grads = grad_fn(trained, frozen, batch)
        new, gnorm, ok = guarded_llm_update(static, state, trained, frozen, grads, loss)
        tokens = jnp.sum(batch["loss_mask"] & batch["example_mask"][:, None])
        return new, {"loss": loss, "grad_norm": gnorm, "tokens": tokens, "skipped": (~ok).astype(jnp.int32),
                     **stats}

    return jit_step(step, state_sharding, mesh)
