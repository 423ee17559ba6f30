"""The zero-shot listwise baseline through any OpenAI-compatible endpoint (the paper's Table 2 DeepSeek-R1
row): the same prompts, budget, answer parser and scores as the local `zero_shot_listwise`
(r2rank_jax.run.listwise, r2rank_jax.eval.listwise), the generations from `cfg.listwise_api`'s endpoint
(`eval.listwise_api.EndpointGenerator`).

    --config.eval.methods=r2rank,zero_shot_listwise_api --config.listwise_api.base_url=URL
    --config.listwise_api.model=NAME [--config.listwise_api.api_key_env=VAR]

Unparsable answers (and prompts whose request failed after its retries: counted by kind) get the worst
case, the positive ranked last. Results add ``parse`` (as the local baseline) and ``endpoint`` (requests,
failed prompts by kind); the outputs go to ``eval/scores/zero_shot_listwise_api.outputs.jsonl``.
The prompt budget is counted with the run's tokenizer (the endpoint's model may count otherwise).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.eval.listwise import score_listwise
from r2rank_jax.eval.listwise_api import EndpointGenerator
from r2rank_jax.methods.protocol import MethodBase, Scorer
from r2rank_jax.methods.registry import register
from r2rank_jax.run import builders
from r2rank_jax.run.context import ScoreInput
from r2rank_jax.run.listwise import listwise_budget, write_outputs
from r2rank_jax.teacher.openai_client import ChatClient, ClientConfig

NAME = "zero_shot_listwise_api"


@dataclasses.dataclass(frozen=True)
class EndpointPlan:
    """What the scorer builds from `cfg.listwise_api` (max_tokens 0 = the local baseline's)."""
    base_url: str
    model: str
    api_key_env: str
    concurrency: int
    max_tokens: int
    temperature: float
    timeout: float
    max_attempts: int

    def client_config(self, max_new_tokens: int) -> ClientConfig:
        """The HTTP client's config; a missing or bad setting is a ConfigError naming the field."""
        for name in ("base_url", "model"):
            if not getattr(self, name):
                raise ConfigError(f"listwise_api.{name} is required by {NAME} "
                                  f"(e.g. --config.listwise_api.base_url=http://127.0.0.1:8000/v1)")
        if self.concurrency < 1:
            raise ConfigError(f"listwise_api.concurrency must be >= 1, got {self.concurrency}")
        try:
            return ClientConfig(base_url=self.base_url, model=self.model, api_key_env=self.api_key_env,
                                timeout=self.timeout, max_attempts=self.max_attempts,
                                max_tokens=self.max_tokens or max_new_tokens, temperature=self.temperature)
        except ValueError as e:
            raise ConfigError(f"listwise_api: {e}") from None


def endpoint_plan(cfg: ExperimentConfig) -> EndpointPlan:
    return EndpointPlan(**dataclasses.asdict(cfg.listwise_api))


def zero_shot_listwise_api(inp: ScoreInput) -> tuple[np.ndarray, dict]:
    cfg, records = inp.cfg, inp.records
    k = max(len(r.candidates) for r in records)
    budget, max_new = listwise_budget(cfg, k)
    plan = endpoint_plan(cfg)
    config = plan.client_config(max_new)
    generate = EndpointGenerator(ChatClient(config, seed=cfg.seed), plan.concurrency, config.max_tokens,
                                 temperature=plan.temperature)
    builder, _ = builders.prompts_and_pipeline(cfg, inp.tokenizer, inp.wd, batch_users=cfg.eval.decode_users(cfg.rl.batch_users))
    result = score_listwise(records, builder, generate, max_prompt_tokens=budget,
                            batch_size=max(8, plan.concurrency), inputs=lambda p: p.messages, pad=False)
    write_outputs(inp.scores_dir / f"{NAME}.outputs.jsonl", records, result)
    return result.scores, {"parse": result.stats.as_dict(), "endpoint": generate.summary()}


@register
class ZeroShotListwiseAPI(MethodBase):
    name = NAME
    summary = "all K candidates in one prompt to an OpenAI-compatible endpoint (listwise_api.*), no training"

    def scorers(self) -> dict[str, Scorer]:
        return {NAME: Scorer(zero_shot_listwise_api, reads_run=False)}

    def plans(self, cfg: ExperimentConfig) -> dict[str, EndpointPlan]:
        return {"endpoint": endpoint_plan(cfg)}
