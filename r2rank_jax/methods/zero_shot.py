"""The zero-shot pointwise LLM baseline (the paper's Table 2): the base model with the decision-only
(`no_cot`) prompt, no rationale; the score is log P(Recommend) − log P(Not Recommend) right after
``<answer>``. It reads no run, so every run's eval stage can score it (`eval.methods`)."""
from __future__ import annotations

import numpy as np

from r2rank_jax.methods.protocol import MethodBase, Scorer
from r2rank_jax.methods.registry import register
from r2rank_jax.run.context import ScoreInput
from r2rank_jax.run.verbalized import verbalized_scores


def zero_shot_pointwise(inp: ScoreInput) -> tuple[np.ndarray, dict] | None:
    return verbalized_scores(inp, None, "no_cot", rationale=False)


@register
class ZeroShotPointwise(MethodBase):
    name = "zero_shot_pointwise"
    summary = "the base model's P(Recommend) with the decision-only prompt (no training)"

    def scorers(self) -> dict[str, Scorer]:
        return {"zero_shot_pointwise": Scorer(zero_shot_pointwise, reads_run=False)}
