"""The RL batch layout and the teacher-forced forward pass over it (shared prefix or brute force).

One user's K sequences are: shared prefix (instructions + user context) ‖ candidate suffix ‖ rationale.
The continuation block holds the suffix LEFT-padded to S tokens, then the rationale right-padded to R
tokens, so the last suffix token always sits at index S − 1 and rationale token j at S + j; the hidden
state that predicts rationale token j is at index S − 1 + j.
"""
from __future__ import annotations

import chex
import flax.struct
import jax
import jax.numpy as jnp

from r2rank_jax.models.attention import causal_block_count
from r2rank_jax.models.decoder import Decoder, context_from_kv
from r2rank_jax.models.head import gather_hidden


@flax.struct.dataclass
class RLBatch:
    prefix_tokens: jax.Array      # [U, P] int32, left padded
    prefix_positions: jax.Array   # [U, P] int32, -1 = padding
    cont_tokens: jax.Array        # [U, K, S + R] int32: suffix (left padded to S) ‖ rationale (right padded to R)
    cont_positions: jax.Array     # [U, K, S + R] int32, continuing after each user's prefix; -1 = padding
    response_mask: jax.Array      # [U, K, R] bool: real rationale tokens (before and including the stop)
    old_logprobs: jax.Array       # [U, K, R] float32: log-probs under the rollout policy
    score_index: jax.Array        # [U, K] int32: index into the continuation of the scoring (decision) token
    relevance: jax.Array          # [U, K] float32: graded relevance (1 for the positive, 0 otherwise)
    candidate_mask: jax.Array     # [U, K] bool: real candidates

    def check_shapes(self) -> None:
        """Static shape and dtype checks (work under jit); raise naming the offending field."""
        u, p = self.prefix_tokens.shape
        _, k, c = self.cont_tokens.shape
        r = self.response_mask.shape[-1]
        if c <= r:
            raise ValueError(f"RLBatch.cont_tokens has {c} tokens per row, not more than the {r} rationale tokens")
        chex.assert_shape(self.prefix_positions, (u, p), custom_message="RLBatch.prefix_positions")
        chex.assert_shape(self.cont_tokens, (u, k, c), custom_message="RLBatch.cont_tokens")
        chex.assert_shape(self.cont_positions, (u, k, c), custom_message="RLBatch.cont_positions")
        chex.assert_shape([self.response_mask, self.old_logprobs], (u, k, r), custom_message="RLBatch rationale fields")
        chex.assert_shape([self.score_index, self.relevance, self.candidate_mask], (u, k),
                          custom_message="RLBatch per-candidate fields")
        chex.assert_type([self.prefix_tokens, self.cont_tokens, self.score_index], int,
                         custom_message="RLBatch token/index fields")
        chex.assert_type([self.response_mask, self.candidate_mask], bool, custom_message="RLBatch masks")

    @property
    def rationale_len(self) -> int:
        return self.response_mask.shape[-1]

    @property
    def suffix_len(self) -> int:
        return self.cont_tokens.shape[-1] - self.rationale_len


def continuation_hidden(model: Decoder, batch: RLBatch, shared_prefix: bool = True) -> jax.Array:
    """Final hidden states of the continuation tokens: `[U * K, S + R, D]`.

    shared_prefix=True runs each user's prefix once and lets its K continuations attend to the prefix
    keys/values (gradients flow back into the prefix once); False runs K full sequences (the reference).
    """
    u, k, c = batch.cont_tokens.shape
    tokens = batch.cont_tokens.reshape(u * k, c)
    positions = batch.cont_positions.reshape(u * k, c)
    # Every row (prefix, continuation, or both) is in causal slot order: the blocked attention is exact.
    if shared_prefix:
        pre = model(batch.prefix_tokens, batch.prefix_positions, return_kv=True,
                    causal_blocks=causal_block_count(batch.prefix_tokens.shape[1]))
        context = context_from_kv(pre.kv, batch.prefix_positions)
        return model(tokens, positions, context=context, causal_blocks=causal_block_count(c)).hidden
    p = batch.prefix_tokens.shape[1]
    full_tokens = jnp.concatenate([jnp.repeat(batch.prefix_tokens, k, axis=0), tokens], axis=1)
    full_positions = jnp.concatenate([jnp.repeat(batch.prefix_positions, k, axis=0), positions], axis=1)
    return model(full_tokens, full_positions, causal_blocks=causal_block_count(p + c)).hidden[:, p:]


def rationale_inputs(hidden: jax.Array, batch: RLBatch) -> tuple[jax.Array, jax.Array]:
    """(hidden states predicting each rationale token `[U * K, R, D]`, the rationale tokens `[U * K, R]`)."""
    u, k, c = batch.cont_tokens.shape
    s, r = batch.suffix_len, batch.rationale_len
    return hidden[:, s - 1:s - 1 + r], batch.cont_tokens.reshape(u * k, c)[:, s:]


def decision_hidden(hidden: jax.Array, batch: RLBatch) -> jax.Array:
    """Hidden state at each sequence's scoring position: `[U * K, D]`."""
    return gather_hidden(hidden, batch.score_index.reshape(-1))
