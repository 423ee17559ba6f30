"""TALLRec (Bao et al., RecSys 2023) on our candidate protocol: instruction-tune the LLM with LoRA to
answer "Yes"/"No" to "will the user like the target item?", score candidates by P(Yes).

What follows the paper: the instruction/response format (history titles, target title, answer Yes
or No), LoRA r=8, alpha=16 on q and v, learning rate 1e-4, the response-only cross-entropy, and the
score from the first answer token (we rank by log P(Yes) − log P(No) of the full-vocabulary softmax,
monotone in P(Yes) normalized over {Yes, No}). What differs: pairs come from our train split's saved
candidate lists (the positive → Yes, `tallrec.negatives_per_positive` (default 1) of its other
candidates → No) instead of rating thresholds; the prompt is rendered with the model's chat template
and carries R2Rank's user-context line; no EOS after the answer. Config: `ExperimentConfig.tallrec`.
"""
from __future__ import annotations

from r2rank_jax.methods import pointwise_llm
from r2rank_jax.methods.registry import register

METHOD = pointwise_llm.PointwiseMethod(
    name="tallrec",
    question="Given the user's preference history, will the user like the target item? Answer {yes} or {no}.",
    loss="lm", all_words=False, score_kind="log_odds")


@register
class TALLRec(pointwise_llm.PointwiseLLM):
    name = "tallrec"
    summary = "LoRA instruction tuning, P(Yes) (Bao et al. 2023)"
    method = METHOD
