"""Stage `rl`: Algorithm 1 of the paper.

Each step: U train users → K rationales each from the current policy (sampler, shared prefix) →
RLBatch → the jitted train_step (PL rankings, NDCG rewards, PPO on θ, REINFORCE on φ). Every
`eval_every` steps: validation NDCG@10 with greedy rationales, a checkpoint (best kept by it), and
early stopping after `patience` evaluations without improvement. Starts from the SFT checkpoint when
the workdir has one (else, or with `sft.steps=0`, from the base model: the paper's RL-only ablation).
`rl.freeze_llm=True` (the MLP-only ablation) trains the scoring head only: θ stays bitwise equal to
the starting checkpoint. Prompts are the `data.prompt_variant` ones (`no_cot`: the without-CoT
ablation, with short rollouts). Resumable; SIGTERM saves and exits. Multi-host (docs/multihost.md):
each process reads its block of every global batch of users (`distributed.host_batch_shard`), samples
their rationales on a host-local copy of θ (`distributed.host_replica`, one all-gather per step) with
the random numbers those rows get in the whole batch, and contributes its rows of the RLBatch to the
global arrays of the train step (`distributed.put_batch`); validation still feeds every process the
whole batch (a collective sampler call on the sharded θ). Checkpoints are collective as in `sft`.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from r2rank_jax import distributed
from r2rank_jax.methods.r2rank import plans
from r2rank_jax.run import builders as common, driver, seeds
from r2rank_jax.run.context import RunContext
from r2rank_jax.run.scoring import mean_ndcg, score_split
from r2rank_jax.train.rl import make_train_step
from r2rank_jax.train.rollout import rollout
from r2rank_jax.train.state import state_shardings


class EarlyStopping:
    """Tracks validation NDCG@10; `stop` turns True after `patience` evaluations without improvement."""

    def __init__(self, patience: int):
        self.patience, self.best, self.bad, self.stop = patience, -np.inf, 0, False

    def update(self, value: float) -> None:
        if value > self.best + 1e-9:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            self.stop = self.patience > 0 and self.bad >= self.patience


class _Until:
    """The data iterator, ending (StopIteration → the loop saves and returns) once `flag.stop` is set.

    Its state (JSON bytes: Grain's checkpoint handler saves any non-DatasetIterator that way) is the
    wrapped iterator's plus the early-stopping counters, so a resumed run stops exactly where an
    uninterrupted one would.
    """

    def __init__(self, flag: EarlyStopping, it):
        self.flag, self.it = flag, it

    def __iter__(self):
        return self

    def __next__(self):
        if self.flag.stop:
            raise StopIteration
        return next(self.it)

    def get_state(self) -> bytes:
        f = self.flag
        return json.dumps({"data": self.it.get_state(),
                           "early_stopping": {"best": f.best, "bad": f.bad, "stop": f.stop}}).encode()

    def set_state(self, state: bytes) -> None:
        saved = json.loads(state)
        if isinstance(saved, dict) and set(saved) == {"data", "early_stopping"}:
            e = saved["early_stopping"]
            self.flag.best, self.flag.bad, self.flag.stop = float(e["best"]), int(e["bad"]), bool(e["stop"])
            saved = saved["data"]
        self.it.set_state(saved)       # (checkpoints written before the counters were saved: data only)

    def start_prefetch(self) -> None:
        getattr(self.it, "start_prefetch", lambda: None)()


def run(ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    r, plan, rl_cfg = cfg.rl, plans.rollout_plan(cfg), plans.rl_config(cfg)    # config errors before any work
    tokenizer = common.tokenizer(cfg, wd, "rl")
    model, head = common.model_from_sft_or_base(cfg, wd, tokenizer, mesh)
    static, state = common.train_state(model, head, None if r.freeze_llm else r.llm_optim, r.head_optim, cfg.seed,
                                       mesh)
    sampler = common.sampler(model, tokenizer, cfg, plan.max_new_tokens)
    train_step = make_train_step(static, rl_cfg, state_sharding=state_shardings(state) if mesh else None,
                                 mesh=mesh)
    builder, pipeline = common.prompts_and_pipeline(cfg, tokenizer, wd, batch_users=plan.batch_users,
                                                    variant=plan.prompt_variant)
    index, count = distributed.host_batch_shard(mesh)         # (0, 1) with one process
    train_iter = common.iterator(wd, "train", builder, dataclasses.replace(
        pipeline, batch_users=distributed.host_batch_size(plan.batch_users, mesh, "rl.batch_users"),
        shard_index=index, shard_count=count))
    valid = common.source(wd, "valid")
    stopper = EarlyStopping(plan.patience)

    def rl_step(state, batch):
        u, k = batch["labels"].shape                           # this host's U users of the global batch
        params = common.sampling_params(u * k, plan.temperature)
        key = seeds.step_key(cfg.seed, seeds.R2RANK_ROLLOUT, int(state.step))
        rows = None if count == 1 else (count * u * k, index * u * k)
        rl_batch, _ = rollout(sampler, distributed.host_replica(state.llm, mesh), batch, params, key, rows)
        return train_step(state, distributed.put_batch(rl_batch, mesh))     # host rows -> the global RLBatch

    def evaluate(state):
        scores = score_split(sampler, state.llm, static.head_def, state.head, valid, builder, pipeline,
                             max_users=plan.eval_users)
        ndcg = mean_ndcg(scores)
        stopper.update(ndcg)
        return {"valid_ndcg@10": ndcg, "best_valid_ndcg@10": stopper.best}

    result = driver.train(wd, "rl", wd.rl, model, head, plans.rl_loop(cfg, ctx.resume), state, rl_step,
                          _Until(stopper, train_iter), best_metric="valid_ndcg@10", eval_fn=evaluate)
    summary = {"stage": "rl", "step": result.step, "preempted": result.preempted, "early_stopped": stopper.stop,
               "best_valid_ndcg@10": stopper.best if np.isfinite(stopper.best) else None}
    print(json.dumps(summary))
    return summary
