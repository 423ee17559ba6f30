"""R2Rank's library configs, built from an ExperimentConfig in one place: each stage uses these, and the
Spec-wiring test checks that every field of `sft` and `rl` reaches one of them."""
from __future__ import annotations

import dataclasses
from typing import Any

from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.run.builders import optim_config
from r2rank_jax.train import sft_data
from r2rank_jax.train.loop import LoopConfig
from r2rank_jax.train.rl import RLConfig
from r2rank_jax.train.sft import SFTConfig

DECISION_ONLY_RESPONSE_BUCKET = 16     # room for "<answer>Not Recommend</answer>" + EOS (without-CoT SFT)


@dataclasses.dataclass(frozen=True)
class RolloutPlan:
    batch_users: int           # users per RL step (K rationales each)
    max_new_tokens: int        # rationale length cap of the rollouts
    temperature: float         # rollout temperature (traced: changing it does not recompile)
    eval_users: int            # validation users per evaluation (greedy rationales)
    patience: int              # early stopping: evaluations without a better validation NDCG@10
    prompt_variant: str        # the prompts of the rollouts and of R2Rank's eval scores


def sft_data_config(cfg: ExperimentConfig) -> sft_data.SFTDataConfig:
    """The SFT data pipeline for one process (the stage splits the batch over hosts)."""
    s, d = cfg.sft, cfg.data
    response_buckets = tuple(s.response_buckets)
    if d.prompt_variant == "no_cot":
        response_buckets = tuple(sorted({DECISION_ONLY_RESPONSE_BUCKET, *response_buckets}))
    return sft_data.SFTDataConfig(
        batch_size=s.batch_size, seed=cfg.seed, too_long="skip",
        prompt_buckets=tuple(sorted({p + q for p in d.prefix_buckets for q in d.suffix_buckets})),
        response_buckets=response_buckets, shared_prefix=s.shared_prefix)


def sft_loop(cfg: ExperimentConfig, resume: bool = False, has_eval: bool = True) -> LoopConfig:
    s = cfg.sft
    return LoopConfig(total_steps=s.steps, log_every=max(1, min(10, s.eval_every)),
                      eval_every=s.eval_every if has_eval else 0, save_every=s.checkpoint_every, resume=resume)


def rl_config(cfg: ExperimentConfig) -> RLConfig:
    r = cfg.rl
    groups = r.microbatches * r.ppo_minibatches
    if r.batch_users % groups:
        raise ConfigError(f"rl.batch_users={r.batch_users} does not split into rl.ppo_minibatches={r.ppo_minibatches}"
                          f" x rl.microbatches={r.microbatches} groups of users")
    if r.baseline == "loo_users" and r.batch_users // groups < 2:
        raise ConfigError(f"rl.baseline='loo_users' needs >= 2 users per microbatch: rl.batch_users={r.batch_users} "
                          f"over rl.ppo_minibatches={r.ppo_minibatches} x rl.microbatches={r.microbatches} leaves "
                          f"{r.batch_users // groups}")
    try:
        return _rl_config(r)
    except ValueError as e:
        raise ConfigError(f"rl: {e}") from None


def _rl_config(r) -> RLConfig:
    return RLConfig(num_rankings=r.num_rankings, ndcg_k=r.ndcg_k, advantage=r.advantage, baseline=r.baseline,
                    clip_eps=r.clip_eps, temperature=r.temperature, head_grad_into_llm=r.head_grad_into_llm,
                    head_loss_weight=r.head_loss_weight, shared_prefix=r.shared_prefix, microbatches=r.microbatches,
                    logit_chunk=r.logit_chunk, token_aggregation=r.token_aggregation, freeze_llm=r.freeze_llm,
                    ppo_epochs=r.ppo_epochs, ppo_minibatches=r.ppo_minibatches)


def rl_loop(cfg: ExperimentConfig, resume: bool = False) -> LoopConfig:
    r = cfg.rl
    return LoopConfig(total_steps=r.steps, log_every=max(1, min(10, r.eval_every)), eval_every=r.eval_every,
                      save_every=r.checkpoint_every, resume=resume)


def rollout_plan(cfg: ExperimentConfig) -> RolloutPlan:
    r = cfg.rl
    variant = r.prompt_variant or cfg.data.prompt_variant
    if variant not in ("cot", "no_cot"):
        raise ConfigError(f"rl.prompt_variant={r.prompt_variant!r}: expected '', 'cot' or 'no_cot'")
    return RolloutPlan(r.batch_users, r.max_new_tokens, r.temperature, r.eval_users, r.patience, variant)


def plans(cfg: ExperimentConfig) -> dict[str, Any]:
    r = cfg.rl
    return {"sft.data": sft_data_config(cfg), "sft.loop": sft_loop(cfg), "sft.optim": optim_config(cfg.sft.optim),
            "sft.step": SFTConfig(cfg.sft.microbatches, shared_prefix=cfg.sft.shared_prefix), "sft.skipped": cfg.sft.steps == 0,
            "rl.config": rl_config(cfg), "rl.loop": rl_loop(cfg), "rl.rollout": rollout_plan(cfg),
            "rl.llm_optim": None if r.freeze_llm else optim_config(r.llm_optim), "rl.head_optim": optim_config(r.head_optim)}
