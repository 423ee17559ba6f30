"""Method "r2ec": R²ec trained with RecPO ("Towards Large Recommender Models with Reasoning";
github.com/YRYangang/RRec), on our candidate protocol. Config section `r2ec` (config.R2ECSpec).

- `rl`: from the base model (R²ec has no SFT stage here), with `r2ec.lora` adapters (R2EC_LORA by
  default; rank 0 trains all of θ). Each step: U train users → G reasonings each from the jitted
  sampler (shared prefix) → the jitted RecPO step (r2ec_step.py). Every `eval_every` steps:
  validation NDCG@10 (greedy reasoning) and a checkpoint, the best kept by it. Resumable; SIGTERM
  saves and exits (train/loop.py).
- `score`: one greedy reasoning per user; the head scores the K saved candidates by
  cos(h_user, h_item) / τ.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.data.pipeline import SplitSource
from r2rank_jax.eval import journal
from r2rank_jax.methods import r2ec_loss as L
from r2rank_jax.methods.r2ec_data import R2ecPrompts, UserBatches
from r2rank_jax.methods.r2ec_step import item_hidden, make_train_step, rollout
from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax import distributed
from r2rank_jax.methods.protocol import MethodBase, Scorer as MethodScorer
from r2rank_jax.methods.registry import register
from r2rank_jax.run import builders as common, driver, seeds
from r2rank_jax.run.build import build_model, model_plan
from r2rank_jax.run.context import RunContext, ScoreInput
from r2rank_jax.sampling.sampler import Sampler
from r2rank_jax.train.loop import LoopConfig
from r2rank_jax.train.rollout import prompt_lists
from r2rank_jax.train.state import create_train_state, state_shardings


def model(cfg: ExperimentConfig, tok, mesh=None):
    """(decoder with `r2ec.lora` adapters, placeholder head): the head only keeps the shared
    TrainState/checkpoint layout; R²ec scores with embeddings, not with it."""
    return build_model(run_config(cfg), tok, mesh)


def run_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with R²ec's adapters (`r2ec.lora`) in place of `model.lora`."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora=cfg.r2ec.lora))


def prompts(cfg: ExperimentConfig, tok, source: SplitSource) -> R2ecPrompts:
    return R2ecPrompts(tok, source.items, cfg.data.prefix_buckets, cfg.r2ec.item_tokens, cfg.data.max_prompt_tokens,
                       cfg.data.item_fields)


def sampler(llm, tok, cfg: ExperimentConfig, max_new_tokens: int) -> Sampler:
    """Stops at EOS only; suffix bucket 1 (the user prompt's last token)."""
    return common.sampler(llm, tok, cfg, max_new_tokens, buckets=(1, *cfg.data.prefix_buckets), stop_at_answer=False)


class Scorer:
    """Greedy reasoning per user, then the head's scores of the K candidates: `[U, K]`."""

    def __init__(self, smp: Sampler, llm_def, tau: float):
        self.sampler, self.tau = smp, tau

        @jax.jit
        def scores(state, user_h, tokens, positions):
            items = item_hidden(nnx.merge(llm_def, state), tokens, positions)        # [U, K, D]
            return L.head_scores(user_h, items, tau)
        self._scores = scores

    def __call__(self, llm_state, batch: dict) -> np.ndarray:
        u = batch["prefix_tokens"].shape[0]
        prefixes, suffixes = prompt_lists(batch)
        out = self.sampler.generate_shared(prefixes, suffixes, SamplingParams.greedy(u), jax.random.PRNGKey(0),
                                           state=llm_state)
        s = self._scores(llm_state, out.hidden, jnp.asarray(batch["item_tokens"]), jnp.asarray(batch["item_positions"]))
        return np.where(batch["cand_mask"], np.asarray(s, np.float32), -np.inf)


def score_records(scorer: Scorer, llm_state, pr: R2ecPrompts, records, batch_users: int) -> np.ndarray:
    """Scores `[N, K]` of `records` in order (-inf on padded candidates). Inside the eval stage's score journal
    each batch of users is journaled, and replayed by a resumed eval."""
    section = journal.section()
    rows = []
    for b, i in enumerate(range(0, len(records), batch_users)):
        chunk = records[i:i + batch_users]
        payload = journal.replay_or_compute(section, b, [r.user_id for r in chunk], lambda chunk=chunk: {
            "scores": journal.encode_floats(scorer(llm_state, pr.batch(chunk, 1, batch_users))[:len(chunk)])})
        rows.extend(np.asarray(journal.decode_floats(payload["scores"]), np.float32))
    return np.stack(rows)


def _ndcg(scores: np.ndarray, records) -> float:
    labels = np.zeros(scores.shape, np.float32)
    for i, r in enumerate(records):
        labels[i, list(r.candidates).index(r.positive)] = 1.0
    return float(np.mean(ndcg_at_k_from_scores(scores, labels, 10, mask=np.isfinite(scores))))


def loop_config(cfg: ExperimentConfig, resume: bool = False) -> LoopConfig:
    r = cfg.r2ec
    return LoopConfig(total_steps=r.steps, log_every=max(1, min(10, r.eval_every or 10)), eval_every=r.eval_every,
                      save_every=r.checkpoint_every, resume=resume)


def rl(ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    r = cfg.r2ec
    tok = common.tokenizer(cfg, wd, "rl")
    llm, head = model(cfg, tok, mesh)
    static, state = create_train_state(llm, head, common.optimizer(r.optim), optax.set_to_zero(),
                                       jax.random.PRNGKey(cfg.seed), mesh)
    train_step = make_train_step(static, r, state_sharding=state_shardings(state) if mesh else None, mesh=mesh)
    train, valid = common.source(wd, "train"), common.source(wd, "valid")
    pr = prompts(cfg, tok, train)
    smp = sampler(llm, tok, cfg, r.max_new_tokens)
    scorer = Scorer(sampler(llm, tok, cfg, cfg.eval.max_new_tokens), static.llm_def, r.tau)
    data = UserBatches(train.records, pr, r.batch_users, r.group_size, cfg.seed)
    valid_records = valid.records[:r.eval_users] if r.eval_users else valid.records
    best = {"value": -np.inf}

    def step(state, batch):
        key = seeds.step_key(cfg.seed, seeds.R2EC_ROLLOUT, int(state.step))
        r2_batch, lengths = rollout(smp, state.llm, batch, r.temperature, key)
        state, metrics = train_step(state, distributed.put_batch(r2_batch, mesh))
        return state, {**metrics, "reasoning_tokens": float(np.mean(lengths))}

    def evaluate(state):
        ndcg = _ndcg(score_records(scorer, state.llm, pr, valid_records, r.batch_users), valid_records)
        best["value"] = max(best["value"], ndcg)
        return {"valid_ndcg@10": ndcg, "best_valid_ndcg@10": best["value"]}

    result = driver.train(wd, "rl", wd.rl, llm, head, loop_config(cfg, ctx.resume), state, step, data,
                          best_metric="valid_ndcg@10", eval_fn=evaluate)
    summary = {"stage": "rl", "method": "r2ec", "step": result.step, "preempted": result.preempted,
               "best_valid_ndcg@10": best["value"] if np.isfinite(best["value"]) else None}
    print(json.dumps(summary))
    return summary


def score(inp: ScoreInput):
    """Scores `[U, K]` of the trained R²ec (best, else latest checkpoint of WORKDIR/rl); None without one."""
    cfg, wd, tok, mesh, source, records = inp.cfg, inp.wd, inp.tokenizer, inp.mesh, inp.source, inp.records
    llm, head = model(cfg, tok, mesh)
    step = common.restore_params(llm, head, wd.rl)
    if step is None:
        return None
    scorer = Scorer(sampler(llm, tok, cfg, cfg.eval.max_new_tokens), nnx.split(llm)[0], cfg.r2ec.tau)
    scores = score_records(scorer, nnx.split(llm)[1], prompts(cfg, tok, source), records, cfg.r2ec.batch_users)
    return scores, {"checkpoint_step": step}


@register
class R2ec(MethodBase):
    name = "r2ec"
    summary = "R²ec with RecPO: one user reasoning, item embeddings, fused reward (RL only)"

    def rl(self, ctx: RunContext) -> dict:
        return rl(ctx)

    def scorers(self) -> dict[str, MethodScorer]:
        return {"r2ec": MethodScorer(score)}

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]:
        # make_train_step and the rollout read the R2ECSpec itself (r2ec_step.py): the spec is the library config.
        return {"model": model_plan(run_config(cfg)), "rl.spec": cfg.r2ec, "rl.loop": loop_config(cfg), "rl.optim": common.optim_config(cfg.r2ec.optim)}
