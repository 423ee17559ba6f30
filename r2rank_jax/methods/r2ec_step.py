"""R²ec's embeddings, rollouts and the single jitted RecPO train step.

Per step, for U users × G reasonings × K candidates: teacher-forced forward over user prompt ‖
reasoning (shared prefix once per user) → reasoning-token log-probs and the user embedding (hidden
state at the reasoning's last token); forward over the K item prompts → item embeddings (last
token) → scores cos/τ `[U, G, K]` → fused rewards, z-scored group advantages → loss = clipped token
objective (ε_low/ε_high, token mean over the batch) + item loss on each group's best trajectory;
no KL. Both embeddings carry gradients (LoRA adapters, or all of θ). The rewards are recomputed in
the step from the same parameters the rollout used (one update per rollout), so they equal the
rollout-time rewards up to numerics. A non-finite loss or gradient leaves the state untouched.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax.config import R2ECSpec
from r2rank_jax.methods import r2ec_loss as L
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler
from r2rank_jax.train.rl_batch import RLBatch, continuation_hidden, decision_hidden, rationale_inputs
from r2rank_jax.train.rollout import prompt_lists, to_rl_batch
from r2rank_jax.train.state import Static, TrainState, guarded_llm_update, jit_step
from r2rank_jax.train.token_logprobs import token_logprobs


@flax.struct.dataclass
class R2ecBatch:
    seq: RLBatch                 # U users × G reasonings (suffix = the user prompt's last token, S = 1)
    item_tokens: jax.Array       # [U, K, T] int32, left padded
    item_positions: jax.Array    # [U, K, T] int32, -1 = padding
    target: jax.Array            # [U, K] float32, 1 on the positive
    cand_mask: jax.Array         # [U, K] bool
    example_mask: jax.Array      # [U] bool


def item_hidden(model: Decoder, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    """Item prompts `[..., T]` (left padded) → last-token final hidden states `[..., D]`."""
    lead, t = tokens.shape[:-1], tokens.shape[-1]
    out = model(tokens.reshape(-1, t), positions.reshape(-1, t)).hidden[:, -1]
    return out.reshape(*lead, out.shape[-1])


def group_scores(model: Decoder, batch: R2ecBatch, tau: float) -> tuple[jax.Array, jax.Array]:
    """(head scores `[U, G, K]` of each reasoning over the user's candidates, the teacher-forced hidden
    states of the continuations `[U * G, 1 + R, D]`). User embedding: the hidden state at the
    reasoning's last token; item embedding: the item prompt's last token."""
    u, g, _ = batch.seq.response_mask.shape
    hidden = continuation_hidden(model, batch.seq)
    user_h = decision_hidden(hidden, batch.seq).reshape(u, g, -1)
    items = item_hidden(model, batch.item_tokens, batch.item_positions)              # [U, K, D]
    return L.head_scores(user_h, jnp.broadcast_to(items[:, None], (u, g) + items.shape[1:]), tau), hidden


def rollout(sampler: Sampler, llm_state, batch: dict, temperature: float, key: jax.Array
            ) -> tuple[R2ecBatch, jax.Array]:
    """G reasonings per user from the current policy → (R2ecBatch with the rollout's log-probs, lengths `[U, G]`)."""
    u, g = batch["labels"].shape
    prefixes, suffixes = prompt_lists(batch)
    out = sampler.generate_shared(prefixes, suffixes, SamplingParams.make(u * g, temperature=temperature), key,
                                  state=llm_state)
    seq = to_rl_batch(batch, out)
    r2 = R2ecBatch(seq=seq, item_tokens=batch["item_tokens"], item_positions=batch["item_positions"],
                   target=batch["target"], cand_mask=batch["cand_mask"], example_mask=batch["example_mask"])
    return r2, np.asarray(out.lengths).reshape(u, g)


def make_train_step(static: Static, spec: R2ECSpec, state_sharding=None, mesh=None, logit_chunk: int = 64):
    """The jitted `train_step(state, R2ecBatch) -> (state, metrics)`; the head of `state` is not used."""

    def loss_fn(trained, frozen, batch: R2ecBatch):
        model = nnx.merge(static.llm_def, static.merge_llm(trained, frozen))
        seq = batch.seq
        u, g, r = seq.response_mask.shape
        scores, hidden = group_scores(model, batch, spec.tau)
        h_in, targets = rationale_inputs(hidden, seq)
        new_logp, entropy = token_logprobs(model, h_in, targets, spec.temperature, logit_chunk)
        reward, ndcg, prob = L.fused_reward(jax.lax.stop_gradient(scores), batch.target, batch.cand_mask,
                                            spec.ndcg_k, spec.softmax_weight)
        adv = L.group_advantages(reward)
        tok_mask = seq.response_mask & batch.example_mask[:, None, None]
        obj, clipped = L.clipped_token_objective(new_logp.reshape(u, g, r), seq.old_logprobs, adv, tok_mask,
                                                 spec.eps_low, spec.eps_high)
        tokens = jnp.maximum(jnp.sum(tok_mask), 1)
        token_loss = -jnp.sum(obj) / tokens
        users = jnp.maximum(jnp.sum(batch.example_mask), 1)
        per_user, _ = L.item_loss(scores, batch.target, batch.cand_mask, adv, spec.item_loss)
        i_loss = jnp.sum(jnp.where(batch.example_mask, per_user, 0.0)) / users
        ex = batch.example_mask[:, None]
        mean_u = lambda x: jnp.sum(jnp.where(ex, x, 0.0)) / (users * g)  # noqa: E731
        stats = {"token_loss": token_loss, "item_loss": i_loss, "reward": mean_u(reward),
                 f"ndcg@{spec.ndcg_k}": mean_u(ndcg), "target_prob": mean_u(prob),
                 "reward_std": jnp.sum(jnp.where(batch.example_mask, jnp.std(reward, axis=1, ddof=1), 0.0)) / users,
                 "clip_frac": jnp.sum(clipped) / tokens,
                 "entropy": jnp.sum(jnp.where(tok_mask, entropy.reshape(u, g, r), 0.0)) / tokens,
                 "tokens": jnp.sum(tok_mask).astype(jnp.float32)}
        return token_loss + i_loss, stats

    grads = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: R2ecBatch):
        trained, frozen = static.split_llm(state.llm)
        (loss, stats), g = grads(trained, frozen, batch)
        new, gnorm, ok = guarded_llm_update(static, state, trained, frozen, g, loss)
        return new, {"loss": loss, **stats, "grad_norm_llm": gnorm, "skipped": (~ok).astype(jnp.int32)}

    return jit_step(step, state_sharding, mesh)
