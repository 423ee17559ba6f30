"""Prompt4NR (Zhang & Wang, SIGIR 2023) on our candidate protocol: a discrete prompt asking whether the
user would be interested in the candidate, answered through a verbalizer, fine-tuned end to end.

What follows the paper: the prompt-based formulation with answer words per class (default relevant
{"Yes", "yes"}, irrelevant {"No", "no"}; `prompt4nr.relevant_words` / `irrelevant_words`), the
training loss = cross-entropy over the two verbalizer classes at the answer position (class logit =
log-sum-exp of its words' logits; not the full-vocabulary LM loss), full fine-tuning by default
(LoRA through `model.lora`), 4 negatives per positive (their npratio), and the score = the relevant
class probability. What differs: a causal decoder answers at the position after the chat template's
assistant header instead of a BERT [MASK]; candidates are the saved lists of our split; answer words
are read through their first token. Config: `ExperimentConfig.prompt4nr`.
"""
from __future__ import annotations

from r2rank_jax.methods import pointwise_llm
from r2rank_jax.methods.registry import register

METHOD = pointwise_llm.PointwiseMethod(
    name="prompt4nr",
    question="Based on the user's history, would the user be interested in the candidate item? "
             "Answer {yes} or {no}.",
    loss="classes", all_words=True, score_kind="probability")


@register
class Prompt4NR(pointwise_llm.PointwiseLLM):
    name = "prompt4nr"
    summary = "prompt learning with a verbalizer, full fine-tuning (Zhang & Wang 2023)"
    method = METHOD
