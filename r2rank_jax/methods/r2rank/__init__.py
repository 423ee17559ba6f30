"""R2Rank (the paper's method): self-reflective SFT warm start, then RL through a Plackett-Luce ranking
policy; the scoring head ranks the candidates from each rationale's decision-point hidden state.

Stages: `synthesize` (teacher corpus, `synthesize.py`), `sft` (`sft.py`), `rl` (Algorithm 1, `rl.py`).
Scorers (`score.py`): `r2rank` (the RL checkpoint, head scores) and `sft_only` (the SFT checkpoint, its
verbalized decision).
"""
from __future__ import annotations

from typing import Any

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.methods.protocol import MethodBase, Scorer
from r2rank_jax.methods.r2rank import plans, rl, score, sft, synthesize
from r2rank_jax.methods.registry import register
from r2rank_jax.run.context import RunContext


@register
class R2Rank(MethodBase):
    name = "r2rank"
    summary = "Reasoning to Rank: SFT on filtered teacher rationales, then PL-policy RL (the paper)"

    def synthesize(self, ctx: RunContext) -> dict:
        return synthesize.run(ctx)

    def sft(self, ctx: RunContext) -> dict:
        return sft.run(ctx)

    def rl(self, ctx: RunContext) -> dict:
        return rl.run(ctx)

    def scorers(self) -> dict[str, Scorer]:
        return {"r2rank": Scorer(score.r2rank), "sft_only": Scorer(score.sft_only)}

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]:
        return plans.plans(cfg)
