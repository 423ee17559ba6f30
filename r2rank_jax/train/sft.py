"""The jitted SFT step: token cross-entropy of the teacher's response, prompt tokens masked.

A batch is `sft_data`'s layout: ``tokens``/``positions`` `[B, P+R]` (prompt left-padded into the first
P columns, response right-padded into the last R), ``loss_mask`` `[B, R]`, ``example_mask`` `[B]`.
The hidden state at column ``P-1+r`` predicts response token ``r``, so only the `[B, R]` response
slice ever reaches the vocabulary projection, in chunks (`token_logprobs`): prompt positions cost no
logits. The loss is the mean negative log-likelihood over all response tokens of the (global)
batch; microbatches split the batch rows and accumulate gradients in a `lax.scan`. Only θ (the LLM)
and its optimizer state change; the head φ, its optimizer and the RNG key pass through. A
non-finite loss or gradient leaves the state untouched and is reported as ``skipped``. With LoRA
only the adapters of θ get gradients and updates (train/state.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from r2rank_jax import distributed
from r2rank_jax.models.attention import causal_block_count
from r2rank_jax.models.decoder import context_from_kv
from r2rank_jax.train.microbatch import split_rows
from r2rank_jax.train.state import Static, TrainState, guarded_llm_update, jit_step
from r2rank_jax.train.token_logprobs import token_logprobs


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    microbatches: int = 1   # gradient accumulation over batch rows
    logit_chunk: int = 64   # response tokens per chunk of vocabulary logits
    shared_prefix: int = 0  # the batch's leading columns every row shares (sft_data's shared layout): run once

    def __post_init__(self) -> None:
        if self.microbatches < 1 or self.logit_chunk < 1:
            raise ValueError("SFTConfig.microbatches and SFTConfig.logit_chunk must be >= 1")
        if self.shared_prefix < 0:
            raise ValueError(f"SFTConfig.shared_prefix must be >= 0, got {self.shared_prefix}")


def response_logprobs(model, tokens: jax.Array, positions: jax.Array, response_len: int,
                      chunk: int = 64, blocked_attention: bool = True, shared_prefix: int = 0,
                      rows_per_prefix: int = 0) -> jax.Array:
    """tokens, positions `[B, P+R]` → log p(response token r | everything before) `[B, R]` float32.

    blocked_attention=False: dense `[T, T]` attention (the reference `bench.sft_step` compares with).
    shared_prefix=N: columns `[:, :N]` are the same in every row (`sft_data`'s shared layout); they run once, on
    row 0, and every row's other columns attend to their keys and values: the same log-probs and gradients.
    rows_per_prefix=K (0: the whole batch): the first N columns repeat in each group of K consecutive rows instead,
    and run once per group (`bench.sft_step` measures this)."""
    p = tokens.shape[1] - response_len
    if p < 1:
        raise ValueError(f"a batch of width {tokens.shape[1]} has no prompt columns before its {response_len} "
                         "response columns")
    if not 0 <= shared_prefix < p:
        raise ValueError(f"shared_prefix={shared_prefix} must leave prompt columns of its own (prompt width {p})")
    # A left-padded prompt then a right-padded response: causal slot order, so the blocked attention is exact.
    blocks = (lambda width: causal_block_count(width)) if blocked_attention else (lambda width: None)
    if shared_prefix:
        group = rows_per_prefix or tokens.shape[0]
        pre = model(tokens[::group, :shared_prefix], positions[::group, :shared_prefix], return_kv=True,
                    causal_blocks=blocks(shared_prefix))
        context = context_from_kv(pre.kv, positions[::group, :shared_prefix])
        rest = tokens.shape[1] - shared_prefix
        hidden = model(tokens[:, shared_prefix:], positions[:, shared_prefix:], context=context,
                       causal_blocks=blocks(rest)).hidden                           # [B, P+R-N, D]
    else:
        hidden = model(tokens, positions, causal_blocks=blocks(tokens.shape[1])).hidden   # [B, P+R, D]
    start = p - 1 - shared_prefix                  # hidden's column that predicts response token 0
    h = jax.lax.slice_in_dim(hidden, start, start + response_len, axis=1)
    logp, _ = token_logprobs(model, h, tokens[:, p:], 1.0, chunk)
    return logp


def _token_mask(batch: Mapping[str, jax.Array]) -> jax.Array:
    return batch["loss_mask"] & batch["example_mask"][:, None]


def make_sft_step(static: Static, cfg: SFTConfig = SFTConfig(), lr_schedule: optax.Schedule | None = None,
                  state_sharding: Any = None, mesh: Mesh | None = None) -> Callable:
    """Returns ``sft_step(state, batch) -> (state, metrics)``, jitted once per bucket shape, state donated.

    ``batch`` holds ``sft_data.DEVICE_KEYS``. Metrics: loss (mean response-token NLL), tokens,
    grad_norm, skipped, and lr when ``lr_schedule`` is given.
    """
    def loss_fn(trained, frozen, mb, denom):
        model = nnx.merge(static.llm_def, static.merge_llm(trained, frozen))
        logp = response_logprobs(model, mb["tokens"], mb["positions"], mb["loss_mask"].shape[1], cfg.logit_chunk,
                                 shared_prefix=cfg.shared_prefix)
        nll = -jnp.sum(jnp.where(_token_mask(mb), logp, 0.0))
        return nll / denom, nll

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        batch = {k: batch[k] for k in ("tokens", "positions", "loss_mask", "example_mask")}
        tokens = jnp.sum(_token_mask(batch))
        denom = jnp.maximum(tokens, 1).astype(jnp.float32)
        trained, frozen = static.split_llm(state.llm)   # gradients only for `trained` (LoRA: the adapters)

        def accumulate(carry, mb):
            grads, loss, nll = carry
            (l, n), g = grad_fn(trained, frozen, mb, denom)
            return (jax.tree.map(jnp.add, grads, g), loss + l, nll + n), None

        init = (jax.tree.map(jnp.zeros_like, trained), jnp.zeros(()), jnp.zeros(()))
        (grads, loss, _), _ = jax.lax.scan(accumulate, init, split_rows(dict(batch), cfg.microbatches))
        new, gnorm, ok = guarded_llm_update(static, state, trained, frozen, grads, loss)
        metrics = {"loss": loss, "tokens": tokens, "grad_norm": gnorm, "skipped": (~ok).astype(jnp.int32)}
        if lr_schedule is not None:
            metrics["lr"] = jnp.asarray(lr_schedule(state.step), jnp.float32)
        return new, metrics

    return jit_step(step, state_sharding, mesh)


def make_sequence_logprobs(static: Static, chunk: int = 64, mesh: Mesh | None = None,
                           shared_prefix: int = 0) -> Callable:
    """Returns jitted ``fn(llm_params, batch) -> (sum of response log-probs [B], response tokens [B])``
    (evaluation: held-out loss, teacher-forced decision scores)."""
    def fn(llm, batch):
        model = nnx.merge(static.llm_def, llm)
        logp = response_logprobs(model, batch["tokens"], batch["positions"], batch["loss_mask"].shape[1], chunk,
                                 shared_prefix=shared_prefix)
        mask = _token_mask(batch)
        return jnp.sum(jnp.where(mask, logp, 0.0), axis=1), jnp.sum(mask, axis=1)

    jitted = jax.jit(fn)
    if mesh is None:
        return jitted

    def on_mesh(llm, batch):
        with jax.set_mesh(mesh):
            return jitted(llm, batch)
    return on_mesh


def put_batch(batch: Mapping[str, np.ndarray], mesh: Mesh | None = None,
              keys: tuple[str, ...] = ("tokens", "positions", "loss_mask", "labels", "example_mask"),
              host_rows: bool = True) -> dict[str, jax.Array]:
    """The numeric arrays of a host batch on device; with a mesh, rows split over (data, fsdp).

    Multi-host: ``host_rows`` means ``batch`` is this host's block of the global batch
    (`distributed.host_batch_shard`); otherwise every host passes the same whole batch (evaluation).
    """
    return distributed.put_batch({k: batch[k] for k in keys}, mesh, host_rows)
