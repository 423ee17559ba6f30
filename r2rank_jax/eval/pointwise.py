"""Pointwise LLM rankers that read the model's answer: the verbalizer score of every candidate.

`VerbalizedBatchScorer` turns one pipeline batch (U users × K candidates, shared prefixes) into
scores `[U, K]` = log P("Recommend") − log P("Not Recommend") at the answer (`verbalizer`):

- without a sampler (zero-shot pointwise): the context is the prompt followed by ``<answer>``;
- with a sampler (SFT-only): the model first writes its rationale greedily (stopping at
  ``</answer>`` or EOS), which is cut right after its ``<answer>`` tag, or gets the tag appended; the
  answer is read on from the decode's own KV cache (`AnswerScorer.logprobs_after_decode`), with the
  tokens past the cut masked out, instead of prefilling prompt and rationale a second time.

It counts how many rationales wrote the tag themselves (`tag_rate`).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from r2rank_jax.data.prompt_text import ANSWER_OPEN
from r2rank_jax.eval import rationale_log
from r2rank_jax.eval.verbalizer import AnswerScorer, decision_scores, rationale_context
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler
from r2rank_jax.train.rollout import prompt_lists


class VerbalizedBatchScorer:
    """`(pipeline batch, key) → scores [U, K]` (module docstring); `scorer` answers (Recommend, Not Recommend)."""

    def __init__(self, scorer: AnswerScorer, tokenizer: Any, sampler: Sampler | None = None,
                 eos_ids: tuple[int, ...] = ()):
        self.scorer = scorer
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.eos_ids = eos_ids
        self.tag_ids = list(tokenizer(ANSWER_OPEN, add_special_tokens=False)["input_ids"])
        self.rationales = 0
        self.tagged = 0

    @property
    def tag_rate(self) -> float | None:
        """Fraction of generated rationales that wrote ``<answer>`` themselves (None without a sampler)."""
        return self.tagged / self.rationales if self.rationales else None

    def journal_state(self) -> dict[str, int]:
        """The tag-rate counters so far (kept by a score journal with each batch, `eval.journal`)."""
        return {"rationales": self.rationales, "tagged": self.tagged}

    def restore_journal_state(self, state: dict[str, int]) -> None:
        self.rationales, self.tagged = int(state["rationales"]), int(state["tagged"])

    def _contexts(self, batch, ids: np.ndarray, valid: np.ndarray) -> list[list[int]]:
        """Per row (u * K + k): its generated rationale cut after ``<answer>`` (or with the tag appended)."""
        rationale_log.record(batch, ids, valid)                  # the eval stage's report sample (else a no-op)
        # Only real candidates of real users count towards tag_rate (not the padding of a short last batch).
        real = (batch["example_mask"][:, None] & (batch["candidate_index"] >= 0)).reshape(-1)
        contexts = []
        for i in range(ids.shape[0]):
            gen = ids[i][valid[i]].tolist()
            if real[i]:
                self.rationales += 1
                self.tagged += ANSWER_OPEN in self.tokenizer.decode(gen, skip_special_tokens=False)
            contexts.append(rationale_context(gen, self.tokenizer, drop_ids=self.eos_ids))
        return contexts

    def __call__(self, batch: dict, key: jax.Array) -> np.ndarray:
        u, k = batch["labels"].shape
        prefixes, suffixes = prompt_lists(batch)
        if self.sampler is None:
            continuations = [[s + self.tag_ids for s in user] for user in suffixes]
            return decision_scores(self.scorer.logprobs_shared(prefixes, continuations)).reshape(u, k)
        # The rationale's keys and values are already in the decode's cache: the answer is read on from there.
        decoded = self.sampler.generate_shared(prefixes, suffixes, SamplingParams.make(u * k, temperature=0.0), key,
                                               keep_cache=True)
        contexts = self._contexts(batch, np.asarray(decoded.output.ids), np.asarray(decoded.output.valid))
        return decision_scores(self.scorer.logprobs_after_decode(decoded, contexts)).reshape(u, k)
