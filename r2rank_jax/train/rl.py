"""The single jitted RL `train_step` of R2Rank (Algorithm 1): PPO on θ, REINFORCE on φ.

For a batch of U users × K candidates × R rollout tokens:
teacher-forced forward of π_θ (shared prefix once per user) → token log-probs (only at rationale
tokens) and the hidden state at each decision point → head scores s `[U, K]` → M rankings τ ~ PL(s)
→ ρ(τ) = NDCG@k → θ: PPO clipped token objective with advantages (listwise: ρ − b; item: PL score
function credit) ; φ: REINFORCE on (ρ − b)·log P(τ|s), the hidden state held fixed by default →
separate optax updates. Microbatches over users accumulate gradients in a `lax.scan`. A non-finite
loss, score or gradient leaves the state untouched and is reported in the metrics.

`freeze_llm` (the paper's MLP-only ablation): θ is not differentiated, the token log-probs and the
PPO objective are not computed, and θ and its optimizer state are passed through unchanged (bitwise);
only the head's REINFORCE update runs (the forward pass still produces the decision hidden states).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from r2rank_jax.ranking import plackett_luce as pl
from r2rank_jax.ranking.metrics import ndcg_at_k_jax
from r2rank_jax.train import losses
from r2rank_jax.train.microbatch import split_rows
from r2rank_jax.train.rl_batch import RLBatch, continuation_hidden, decision_hidden, rationale_inputs
from r2rank_jax.train.state import Static, TrainState, jit_step
from r2rank_jax.train.token_logprobs import token_logprobs


@dataclasses.dataclass(frozen=True)
class RLConfig:
    num_rankings: int = 1              # M: PL rankings sampled per user (1 = the paper)
    ndcg_k: int = 10                   # reward ρ = NDCG@ndcg_k
    advantage: str = "listwise"        # "listwise" (Eq. 6) or "item" (PL score-function credit per candidate)
    baseline: str = "none"             # "none", "mean" (over the M rankings of the user) or "loo_users" (losses.py)
    clip_eps: float = 0.2              # PPO ε
    temperature: float = 1.0           # rollout temperature: log-probs are of the scaled distribution
    head_grad_into_llm: bool = False   # ablation: let the REINFORCE gradient flow into θ through the hidden state
    head_loss_weight: float = 1.0
    shared_prefix: bool = True         # run each user's prefix once (False: K full sequences)
    microbatches: int = 1              # gradient accumulation over users
    logit_chunk: int = 64              # rationale tokens per chunk of vocabulary logits
    token_aggregation: str = "mean"    # "mean" over all rationale tokens of the batch, or "sum" per user (Eq. 6)
    freeze_llm: bool = False           # MLP-only ablation: θ fixed; no token log-probs, no PPO loss, no θ update
    ppo_epochs: int = 1                # E passes over each rollout batch (1: one update, ratio = 1)
    ppo_minibatches: int = 1           # each pass in this many minibatches of users, one optimizer update each

    def __post_init__(self):
        if self.advantage not in ("listwise", "item"):
            raise ValueError(f"RLConfig.advantage={self.advantage!r}: expected 'listwise' or 'item'")
        if self.baseline not in losses.BASELINES:
            raise ValueError(f"RLConfig.baseline={self.baseline!r}: expected one of {losses.BASELINES}")
        if self.advantage == "listwise" and self.baseline == "mean" and not self.freeze_llm:
            raise ValueError("RLConfig: advantage='listwise' with baseline='mean' gives θ exactly zero gradient (the "
                             "M rankings of a user share its rationale tokens, so ρ − mean ρ sums to zero over them); "
                             "use baseline='loo_users' or 'none', or advantage='item' (docs/rl.md)")
        if self.ppo_epochs < 1 or self.ppo_minibatches < 1:
            raise ValueError("RLConfig.ppo_epochs and RLConfig.ppo_minibatches must be >= 1")
        if self.token_aggregation not in ("mean", "sum"):
            raise ValueError(f"RLConfig.token_aggregation={self.token_aggregation!r}: expected 'mean' or 'sum'")
        if self.num_rankings < 1 or self.microbatches < 1:
            raise ValueError("RLConfig.num_rankings and RLConfig.microbatches must be >= 1")


_SUM_METRICS = ("reward", "ndcg", "clipped", "kl", "entropy", "tokens", "loss_theta", "loss_phi")


def _micro_loss(static: Static, cfg: RLConfig, llm, head_params, mb: RLBatch, key, user_ids, token_denom, num_users,
                fixed=None):
    """Loss of one microbatch. `fixed` (PPO's later passes): (first, perms `[M, u, K]`, advantages `[A, u, K]`)
    — on the first pass the fresh draws are used (and returned in the aux), afterwards the rollout's."""
    model, head = static.models(llm, head_params)
    u, k, r = mb.response_mask.shape
    hidden = continuation_hidden(model, mb, cfg.shared_prefix)
    h_dec = decision_hidden(hidden, mb)
    if cfg.freeze_llm or not cfg.head_grad_into_llm:
        h_dec = jax.lax.stop_gradient(h_dec)
    mask = mb.candidate_mask
    scores = jnp.where(mask, head(h_dec).reshape(u, k), 0.0)

    perms = losses.sample_rankings(key, user_ids, jax.lax.stop_gradient(scores), cfg.num_rankings, mask)
    if fixed is not None:
        perms = jnp.where(fixed[0], perms, fixed[1])
    rewards = losses.ranking_rewards(perms, mb.relevance, mask, cfg.ndcg_k)           # [M, U]
    baseline = losses.reward_baseline(rewards, cfg.baseline)
    loss_phi = losses.reinforce_loss(scores, perms, rewards, baseline, mask) * (u / num_users)
    tok_mask = mb.response_mask & mask[..., None]
    ranking = pl.argsort_ranking(jax.lax.stop_gradient(scores), mask=mask)
    sums = {
        "reward": jnp.sum(jnp.mean(rewards, axis=0)),
        "ndcg": jnp.sum(ndcg_at_k_jax(ranking, mb.relevance, cfg.ndcg_k, mask=mask)),
        "tokens": jnp.sum(tok_mask),
        "loss_phi": loss_phi,
    }
    if cfg.freeze_llm:
        loss = cfg.head_loss_weight * loss_phi
        sums |= {name: jnp.zeros(()) for name in ("clipped", "kl", "entropy", "loss_theta")}
        adv = stats = None
    else:
        h_rat, targets = rationale_inputs(hidden, mb)
        new_logp, entropy = token_logprobs(model, h_rat, targets, cfg.temperature, cfg.logit_chunk)
        new_logp, entropy = new_logp.reshape(u, k, r), entropy.reshape(u, k, r)
        if cfg.advantage == "listwise":
            adv = losses.listwise_advantages(rewards, baseline, k)
        else:
            adv = losses.item_advantages(jax.lax.stop_gradient(scores), perms, rewards, baseline, mask)
        if fixed is not None:
            adv = jnp.where(fixed[0], adv, fixed[2])
        objective, stats = losses.ppo_token_objective(new_logp, mb.old_logprobs, adv, tok_mask, cfg.clip_eps)
        loss_theta = -jnp.sum(objective) / token_denom
        loss = loss_theta + cfg.head_loss_weight * loss_phi
        sums |= {
            "clipped": jnp.sum(stats["clipped"]),
            "kl": losses.approx_kl(stats["log_ratio"], tok_mask),
            "entropy": jnp.sum(jnp.where(tok_mask, entropy, 0.0)),
            "loss_theta": loss_theta,
        }
    finite = jnp.all(jnp.isfinite(scores)) & jnp.isfinite(loss)
    if fixed is None:
        return loss, (sums, finite)
    if adv is None:
        adv = fixed[2]
        sums |= {"ratio": jnp.zeros(()), "ratio_max": jnp.zeros(())}
    else:
        ratio = jnp.where(tok_mask, jnp.exp(stats["log_ratio"]), 0.0)
        sums |= {"ratio": jnp.sum(ratio), "ratio_max": jnp.max(ratio)}
    return loss, (sums, finite, perms, adv)


def candidate_scores(static: Static, llm, head_params, batch: RLBatch, shared_prefix: bool = True) -> jax.Array:
    """Head scores `[U, K]` of the batch's rationales (evaluation: no log-probs, no rankings)."""
    model, head = static.models(llm, head_params)
    u, k = batch.candidate_mask.shape
    hidden = continuation_hidden(model, batch, shared_prefix)
    return jnp.where(batch.candidate_mask, head(decision_hidden(hidden, batch)).reshape(u, k), -jnp.inf)


def make_train_step(static: Static, cfg: RLConfig, state_sharding=None, mesh=None, multi_pass: bool | None = None
                    ) -> Callable:
    """Returns `train_step(state, batch) -> (state, metrics)`, jitted once, with the state donated.

    With ppo_epochs = ppo_minibatches = 1 it is one update (`step`); otherwise E·B updates (`ppo_step`).
    `multi_pass=True` forces the latter (tests: with E = B = 1 both give the same update)."""
    def loss_fn(trained, head, frozen, mb, key, ids, denom, nu, fixed=None):
        return _micro_loss(static, cfg, static.merge_llm(trained, frozen), head, mb, key, ids, denom, nu, fixed)

    # Gradients only for the trained part of θ (all of it, or its LoRA adapters; none when frozen) and for φ.
    grad_fn = jax.value_and_grad(loss_fn, argnums=(1,) if cfg.freeze_llm else (0, 1), has_aux=True)

    def grads(*args):
        out, g = grad_fn(*args)
        return out, ((None,) + g if cfg.freeze_llm else g)   # frozen θ: no gradient (None is an empty tree)

    def step(state: TrainState, batch: RLBatch):
        batch.check_shapes()
        num_users = batch.prefix_tokens.shape[0]
        tok_mask = batch.response_mask & batch.candidate_mask[..., None]
        if cfg.token_aggregation == "mean":
            token_denom = jnp.maximum(jnp.sum(tok_mask), 1).astype(jnp.float32)
        else:
            token_denom = jnp.asarray(num_users, jnp.float32)
        key, sub = jax.random.split(state.key)
        trained, frozen = static.split_llm(state.llm)
        micro, user_ids = split_rows((batch, jnp.arange(num_users)), cfg.microbatches, "users")

        def accumulate(carry, xs):
            g_llm, g_head, loss, sums, finite = carry
            mb, ids = xs
            (l, (s, f)), (gl, gh) = grads(trained, state.head, frozen, mb, sub, ids, token_denom, num_users)
            add = lambda a, b: a + b
            return (jax.tree.map(add, g_llm, gl), jax.tree.map(add, g_head, gh), loss + l,
                    jax.tree.map(add, sums, s), finite & f), None

        zeros = lambda t: jax.tree.map(jnp.zeros_like, t)
        init = (None if cfg.freeze_llm else zeros(trained), zeros(state.head), jnp.zeros(()),
                {n: jnp.zeros(()) for n in _SUM_METRICS}, jnp.asarray(True))
        (g_llm, g_head, loss, sums, finite), _ = jax.lax.scan(accumulate, init, (micro, user_ids))

        new, (gnorm_llm, gnorm_head), ok = _update(static, cfg, state, trained, frozen, g_llm, g_head, finite, key)

        tokens = jnp.maximum(sums["tokens"], 1.0)
        metrics = {
            "loss": loss, "loss_theta": sums["loss_theta"], "loss_phi": sums["loss_phi"],
            "reward": sums["reward"] / num_users, "ndcg@%d" % cfg.ndcg_k: sums["ndcg"] / num_users,
            "clip_frac": sums["clipped"] / tokens, "approx_kl": sums["kl"] / tokens,
            "entropy": sums["entropy"] / tokens, "tokens": sums["tokens"],
            "grad_norm_llm": gnorm_llm, "grad_norm_head": gnorm_head, "skipped": (~ok).astype(jnp.int32),
        }
        return new, metrics

    def ppo_step(state: TrainState, batch: RLBatch):
        """E epochs x B minibatches of updates on one rollout batch, one `lax.scan` over the E·B passes.
        Rankings and advantages are drawn on the first epoch (the rollout's policy) and reused after, so
        the importance ratio and its clip act as in PPO."""
        batch.check_shapes()
        num_users, k = batch.candidate_mask.shape
        e, b = cfg.ppo_epochs, cfg.ppo_minibatches
        minis, mini_ids = split_rows((batch, jnp.arange(num_users)), b, "users")
        users = num_users // b
        key, sub = jax.random.split(state.key)
        a = cfg.num_rankings if cfg.advantage == "listwise" else 1
        cache0 = (jnp.zeros((num_users, cfg.num_rankings, k), jnp.int32), jnp.zeros((num_users, a, k), jnp.float32))
        user_first = lambda x: jnp.swapaxes(x, 0, 1)   # noqa: E731  [M, u, K] <-> [u, M, K]

        def one_pass(carry, xs):
            st, (c_perms, c_adv), ratio_max = carry
            epoch, j = xs
            mb, ids = jax.tree.map(lambda x: x[j], minis), mini_ids[j]
            first = epoch == 0
            tok_mask = mb.response_mask & mb.candidate_mask[..., None]
            if cfg.token_aggregation == "mean":
                denom = jnp.maximum(jnp.sum(tok_mask), 1).astype(jnp.float32)
            else:
                denom = jnp.asarray(users, jnp.float32)
            trained, frozen = static.split_llm(st.llm)
            micro = split_rows((mb, ids, c_perms[ids], c_adv[ids]), cfg.microbatches, "users")

            def accumulate(acc, xs):
                g_llm, g_head, loss, sums, finite = acc
                m, m_ids, fp, fa = xs
                fixed = (first, user_first(fp), user_first(fa))
                (l, (sm, f, perms, adv)), (gl, gh) = grads(trained, st.head, frozen, m, sub, m_ids, denom, users,
                                                           fixed)
                add = lambda x, y: x + y   # noqa: E731
                return (jax.tree.map(add, g_llm, gl), jax.tree.map(add, g_head, gh), loss + l,
                        jax.tree.map(add, sums, sm), finite & f), (m_ids, user_first(perms), user_first(adv))

            zeros = lambda t: jax.tree.map(jnp.zeros_like, t)   # noqa: E731
            init = (None if cfg.freeze_llm else zeros(trained), zeros(st.head), jnp.zeros(()),
                    {n: jnp.zeros(()) for n in (*_SUM_METRICS, "ratio", "ratio_max")}, jnp.asarray(True))
            (g_llm, g_head, loss, sums, finite), (m_ids, perms, adv) = jax.lax.scan(accumulate, init, micro)
            flat = m_ids.reshape(-1)
            c_perms = jnp.where(first, c_perms.at[flat].set(perms.reshape((-1,) + perms.shape[2:])), c_perms)
            c_adv = jnp.where(first, c_adv.at[flat].set(adv.reshape((-1,) + adv.shape[2:])), c_adv)
            new, gnorms, ok = _update(static, cfg, st, trained, frozen, g_llm, g_head, finite, st.key)
            ratio_max = jnp.maximum(ratio_max, sums.pop("ratio_max"))
            return (new, (c_perms, c_adv), ratio_max), (loss, sums, gnorms, ok)

        passes = (jnp.repeat(jnp.arange(e), b), jnp.tile(jnp.arange(b), e))
        (new, _, ratio_max), (loss, sums, gnorms, ok) = jax.lax.scan(one_pass, (state, cache0, jnp.zeros(())), passes)
        new = dataclasses.replace(new, key=key, step=state.step + jnp.any(ok).astype(state.step.dtype))
        sums = jax.tree.map(jnp.sum, sums)
        tokens = jnp.maximum(sums["tokens"], 1.0)
        metrics = {
            "loss": jnp.mean(loss), "loss_theta": sums["loss_theta"] / (e * b), "loss_phi": sums["loss_phi"] / (e * b),
            "reward": sums["reward"] / (num_users * e), "ndcg@%d" % cfg.ndcg_k: sums["ndcg"] / (num_users * e),
            "clip_frac": sums["clipped"] / tokens, "approx_kl": sums["kl"] / tokens,
            "entropy": sums["entropy"] / tokens, "tokens": sums["tokens"] / e,
            "ratio_mean": sums["ratio"] / tokens, "ratio_max": ratio_max,
            "grad_norm_llm": gnorms[0][-1], "grad_norm_head": gnorms[1][-1],
            "skipped": jnp.sum((~ok).astype(jnp.int32)),
        }
        return new, metrics

    if multi_pass is None:
        multi_pass = (cfg.ppo_epochs, cfg.ppo_minibatches) != (1, 1)
    return jit_step(ppo_step if multi_pass else step, state_sharding, mesh)


def _update(static: Static, cfg: RLConfig, state: TrainState, trained, frozen, g_llm, g_head, finite, key):
    """One optimizer update of θ (unless frozen) and φ; the state unchanged when anything is non-finite."""
    gnorm_llm = jnp.zeros(()) if cfg.freeze_llm else optax.tree.norm(g_llm)
    gnorm_head = optax.tree.norm(g_head)
    ok = finite & jnp.isfinite(gnorm_llm) & jnp.isfinite(gnorm_head)
    if cfg.freeze_llm:
        llm, llm_opt = state.llm, state.llm_opt
    else:
        upd_llm, llm_opt = static.llm_tx.update(g_llm, state.llm_opt, trained)
        llm = static.merge_llm(optax.apply_updates(trained, upd_llm), frozen)
    upd_head, head_opt = static.head_tx.update(g_head, state.head_opt, state.head)
    new = TrainState(step=state.step + 1, llm=llm, head=optax.apply_updates(state.head, upd_head),
                     llm_opt=llm_opt, head_opt=head_opt, key=key)
    return jax.lax.cond(ok, lambda: new, lambda: state), (gnorm_llm, gnorm_head), ok
