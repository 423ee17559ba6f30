"""The decode loop: one `lax.while_loop` over a KV cache, per-row stop, outputs for the RL step.

Each iteration chooses token i from the current logits, records it (or padding once the row has
stopped), advances the stop automata, and feeds token i to the model, which yields its last-layer
hidden state (the scoring hidden of the row if token i is its latest valid token) and the logits for
token i + 1. So N iterations give N tokens plus the hidden state of every row's final token, with
no extra pass.
"""
from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.models.kv_cache import KVCache
from r2rank_jax.sampling import stops
from r2rank_jax.sampling.filters import choose_tokens
from r2rank_jax.sampling.params import SamplingParams


@flax.struct.dataclass
class SampleOutput:
    ids: jax.Array          # [B, N] int32 generated tokens, pad id after a row's stop
    valid: jax.Array        # [B, N] bool, True up to and including the stop token
    logprobs: jax.Array     # [B, N] float32 log-prob of each token under its sampling distribution (0 if not valid)
    hidden: jax.Array       # [B, D] final-normed last-layer hidden state of each row's last valid token
    lengths: jax.Array      # [B] int32 number of valid tokens (scoring index = lengths - 1)
    stopped: jax.Array      # [B] bool: ended on EOS or a stop string (False: hit max_new_tokens)


# step(tokens [B, 1], positions [B, 1], cache) → (last-layer hidden [B, D], logits [B, V] float32, cache)
Step = Callable[[jax.Array, jax.Array, KVCache], tuple[jax.Array, jax.Array, KVCache]]


def model_step(model, context: KVCache | None) -> Step:
    """One decoder call per token: the plain single-device step."""
    def step(tokens, positions, cache):
        res = model(tokens, positions, cache=cache, context=context,
                    logits_at=jnp.zeros((tokens.shape[0], 1), jnp.int32))
        return res.hidden[:, 0], res.logits[:, 0], res.cache
    return step


def decode_loop(graphdef: nnx.GraphDef, state: nnx.State, cache: KVCache, context: KVCache | None,
                logits: jax.Array, next_pos: jax.Array, params: SamplingParams, key: jax.Array,
                eos_ids: jax.Array, stop_table: jax.Array, first_row: jax.Array | None = None, *, max_new_tokens: int,
                num_candidates: int, pad_id: int, total_rows: int | None = None) -> tuple[SampleOutput, KVCache]:
    """Samples up to `max_new_tokens` tokens per row.

    cache: own cache `[B, ...]` holding the prompt (room for max_new_tokens more); context: optional
    shared prefix (batch B // group); logits: `[B, V]` at the last prompt token; next_pos: `[B]` the
    position of the first new token; eos_ids: `[E]`; stop_table: `stops.StopStrings.table`.
    total_rows (static) and first_row: these B rows are rows [first_row, first_row + B) of a batch of
    total_rows (a host's block, multi-host): each row draws the uniform it would draw in the whole batch.
    Returns the outputs and the final cache (returned so that a donated input cache is updated in place).
    """
    model = nnx.merge(graphdef, state)
    rows_of = None if total_rows is None else (total_rows, first_row)
    return sample_loop(model_step(model, context), model.config, cache, logits, next_pos, params, key, eos_ids,
                       stop_table, max_new_tokens=max_new_tokens, num_candidates=num_candidates, pad_id=pad_id,
                       rows_of=rows_of)


def sample_loop(step_fn: Step, cfg, cache: KVCache, logits: jax.Array, next_pos: jax.Array, params: SamplingParams,
                key: jax.Array, eos_ids: jax.Array, stop_table: jax.Array, *, max_new_tokens: int,
                num_candidates: int, pad_id: int, rows_of: tuple[int, jax.Array] | None = None,
                any_live: Callable[[jax.Array], jax.Array] | None = None) -> tuple[SampleOutput, KVCache]:
    """`decode_loop` over any `step_fn` (cfg: the model's ModelConfig).

    A split decode runs it on each device's block of rows: rows_of = (total rows, first row of this
    block) makes each row draw the uniform it would draw in the whole batch, and any_live(done) must
    then be True while a row of any block is live (all blocks take the same number of steps).
    """
    b, n = logits.shape[0], max_new_tokens
    d = cfg.hidden_size
    hdt = jnp.dtype(cfg.compute_dtype)
    any_live = any_live or (lambda done: ~jnp.all(done))

    def uniforms(step_key):
        if rows_of is None:
            return None
        return jax.lax.dynamic_slice_in_dim(jax.random.uniform(step_key, (rows_of[0],), jnp.float32), rows_of[1], b)

    def cond(carry):
        step, done = carry[0], carry[5]
        return (step < n) & any_live(done)

    def body(carry):
        step, cache, logits, out, stop_state, done, hidden = carry
        step_key = jax.random.fold_in(key, step)
        tokens, logprobs = choose_tokens(logits, params, step_key, num_candidates, uniforms(step_key))
        live = ~done
        tokens = jnp.where(live, tokens, pad_id)
        out = {
            "ids": out["ids"].at[:, step].set(tokens),
            "valid": out["valid"].at[:, step].set(live),
            "logprobs": out["logprobs"].at[:, step].set(jnp.where(live, logprobs, 0.0)),
        }
        stop_state, hit = stops.advance(stop_table, stop_state, tokens)
        hit = hit | jnp.any(tokens[:, None] == eos_ids[None, :], axis=1)
        new_hidden, logits, cache = step_fn(tokens[:, None], (next_pos + step)[:, None], cache)
        hidden = jnp.where(live[:, None], new_hidden, hidden)
        return step + 1, cache, logits, out, stop_state, done | (live & hit), hidden

    out = {"ids": jnp.full((b, n), pad_id, jnp.int32), "valid": jnp.zeros((b, n), bool),
           "logprobs": jnp.zeros((b, n), jnp.float32)}
    carry = (jnp.zeros((), jnp.int32), cache, logits.astype(jnp.float32), out,
             stops.init_state(stop_table, b), jnp.zeros((b,), bool), jnp.zeros((b, d), hdt))
    _, cache, _, out, _, done, hidden = jax.lax.while_loop(cond, body, carry)
    return SampleOutput(ids=out["ids"], valid=out["valid"], logprobs=out["logprobs"], hidden=hidden,
                        lengths=jnp.sum(out["valid"], axis=1).astype(jnp.int32), stopped=done), cache
