"""The verbalizer pieces of the pointwise LLM baselines: class logits from answer-word logits, the
Prompt4NR class loss, and its jitted train step.

A verbalizer maps classes (0 = relevant, 1 = irrelevant) to answer words; each word is read through
its first token at the answer position (the position right after the prompt's assistant header).

    class_logit[c] = logsumexp_{w in class c} logit[w]          (any per-row shift cancels below)
    P(relevant)    = softmax(class_logit)[0]

Logits or full-vocabulary log-probs give the same class distribution (they differ by a per-row
constant). With one word per class, log P(c=0) - log P(c=1) = log P_vocab(w0) - log P_vocab(w1):
TALLRec's P(Yes) log-odds.

Prompt4NR step: the batch is `train.sft_data`'s layout (prompt left-padded into the first P columns,
a one-token placeholder response after it, ``labels`` 1 = positive); only the prompt columns run
through the decoder, and the loss is the mean cross-entropy of the restricted two-class softmax at
column P-1 over the batch's real rows (not the full-vocabulary LM loss). Microbatches, LoRA, the
non-finite guard and the metrics follow `train.sft.make_sft_step`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from r2rank_jax.train.microbatch import split_rows
from r2rank_jax.train.state import Static, TrainState, guarded_llm_update, jit_step

NUM_CLASSES = 2  # 0 = relevant (the positive's class), 1 = irrelevant


def pool_words(word_logits: jax.Array, word_class: Sequence[int]) -> jax.Array:
    """`[..., A]` logits (or log-probs) of the answer words → `[..., 2]`: per class, their log-sum-exp."""
    member = jnp.asarray(word_class)[None, :] == jnp.arange(NUM_CLASSES)[:, None]       # [2, A]
    return jax.nn.logsumexp(jnp.where(member, word_logits[..., None, :], -jnp.inf), axis=-1)


def class_logits(logits: jax.Array, word_ids: Sequence[int], word_class: Sequence[int]) -> jax.Array:
    """logits `[..., V]` → `[..., 2]`: per class, the log-sum-exp of its answer words' logits."""
    return pool_words(logits[..., jnp.asarray(word_ids, jnp.int32)], word_class)


def class_targets(labels: jax.Array) -> jax.Array:
    """labels (1 = positive) → class index (0 = relevant)."""
    return jnp.where(labels == 1, 0, 1)


def class_nll(logits: jax.Array, labels: jax.Array, word_ids: Sequence[int], word_class: Sequence[int]) -> jax.Array:
    """logits `[B, V]`, labels `[B]` → `[B]` cross-entropy of the two-class softmax."""
    logp = jax.nn.log_softmax(class_logits(logits, word_ids, word_class), axis=-1)      # [B, 2]
    return -jnp.take_along_axis(logp, class_targets(labels)[:, None], axis=-1)[:, 0]


def answer_logits(model, tokens: jax.Array, positions: jax.Array, prompt_len: int) -> jax.Array:
    """tokens, positions `[B, P+R]` (prompt in the first P columns) → logits `[B, V]` at column P-1."""
    b = tokens.shape[0]
    out = model(tokens[:, :prompt_len], positions[:, :prompt_len],
                logits_at=jnp.full((b, 1), prompt_len - 1, jnp.int32))
    return out.logits[:, 0]


def make_class_step(static: Static, word_ids: Sequence[int], word_class: Sequence[int], microbatches: int = 1,
                    lr_schedule: optax.Schedule | None = None, state_sharding: Any = None,
                    mesh: Mesh | None = None) -> Callable:
    """Returns jitted ``step(state, batch) -> (state, metrics)`` (module docstring). Metrics: loss (mean
    class cross-entropy), accuracy (argmax class = label's), tokens (rows), grad_norm, skipped, lr."""
    word_ids, word_class = tuple(int(i) for i in word_ids), tuple(int(c) for c in word_class)

    def loss_fn(trained, frozen, mb, denom):
        model = nnx.merge(static.llm_def, static.merge_llm(trained, frozen))
        prompt_len = mb["tokens"].shape[1] - mb["loss_mask"].shape[1]
        logits = answer_logits(model, mb["tokens"], mb["positions"], prompt_len)
        nll = class_nll(logits, mb["labels"], word_ids, word_class)
        correct = jnp.argmax(class_logits(logits, word_ids, word_class), axis=-1) == class_targets(mb["labels"])
        mask = mb["example_mask"]
        total = jnp.sum(jnp.where(mask, nll, 0.0))
        return total / denom, (total, jnp.sum(mask & correct))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        batch = {k: batch[k] for k in ("tokens", "positions", "loss_mask", "labels", "example_mask")}
        rows = jnp.sum(batch["example_mask"])
        denom = jnp.maximum(rows, 1).astype(jnp.float32)
        trained, frozen = static.split_llm(state.llm)

        def accumulate(carry, mb):
            grads, loss, correct = carry
            (l, (_, c)), g = grad_fn(trained, frozen, mb, denom)
            return (jax.tree.map(jnp.add, grads, g), loss + l, correct + c), None

        init = (jax.tree.map(jnp.zeros_like, trained), jnp.zeros(()), jnp.zeros((), jnp.int32))
        (grads, loss, correct), _ = jax.lax.scan(accumulate, init, split_rows(dict(batch), microbatches))
        new, gnorm, ok = guarded_llm_update(static, state, trained, frozen, grads, loss)
        metrics = {"loss": loss, "accuracy": correct / denom, "tokens": rows, "grad_norm": gnorm,
                   "skipped": (~ok).astype(jnp.int32)}
        if lr_schedule is not None:
            metrics["lr"] = jnp.asarray(lr_schedule(state.step), jnp.float32)
        return new, metrics

    return jit_step(step, state_sharding, mesh)
