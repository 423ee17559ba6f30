"""Scoring a split batch by batch (`score_batches`), and R2Rank inference (`score_split`): K rationales
per user from the sampler (shared prefix), the head on each rationale's decision-point hidden state →
scores `[N, K]` (used by validation and the eval stage)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from r2rank_jax import progress
from r2rank_jax.distributed import to_host
from r2rank_jax.eval import journal, rationale_log
from r2rank_jax.data.pipeline import PipelineConfig, SplitSource, make_iterator
from r2rank_jax.data.prompts import PromptBuilder
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler
from r2rank_jax.train.rollout import prompt_lists


@dataclasses.dataclass
class SplitScores:
    user_ids: list[str]
    candidate_ids: list[list[str]]
    scores: np.ndarray        # [N, K] float32 (head scores; -inf on padded candidates)
    labels: np.ndarray        # [N, K] int32 (1 = positive)
    parse_rate: float | None = None


BatchScorer = Callable[[dict, jax.Array], np.ndarray]   # (pipeline batch, PRNG key) → scores [U, K]


def score_batches(batch_scores: BatchScorer, source: SplitSource, builder: PromptBuilder, pipeline: PipelineConfig,
                  max_users: int = 0, seed: int = 0, desc: str = "scoring") -> SplitScores:
    """Scores the first `max_users` users (0: all) of `source`, in order, batch by batch; padded
    candidates get -inf and padding users are dropped. A progress bar (`desc`, users) on a terminal.
    Inside `eval.journal.journaling` each batch is journaled, and replayed on a resume (a scorer with
    `journal_state()` / `restore_journal_state(state)` has its counters kept too)."""
    cfg = dataclasses.replace(pipeline, shuffle=False, num_epochs=1, drop_remainder=False, worker_count=0)
    users, cands, scores, labels = [], [], [], []
    key = jax.random.PRNGKey(seed)
    total = min(max_users, len(source.records)) if max_users else len(source.records)
    section = journal.section()
    with progress.bar(total, desc, unit="user") as bar:
        for b, batch in enumerate(make_iterator(source, builder, cfg)):
            key, sub = jax.random.split(key)
            s = _journaled_batch(section, b, batch, batch_scores, sub)
            for i in range(s.shape[0]):
                if batch["example_mask"][i]:
                    users.append(str(batch["user_ids"][i]))
                    cands.append([str(c) for c in batch["candidate_ids"][i]])
                    scores.append(s[i])
                    labels.append(batch["labels"][i])
            bar.update(int(np.sum(batch["example_mask"])))
            if max_users and len(users) >= max_users:
                break
    n = max_users or len(users)
    return SplitScores(users[:n], cands[:n], np.stack(scores[:n]).astype(np.float32),
                       np.stack(labels[:n]).astype(np.int32))


def _journaled_batch(section: journal.Section, b: int, batch: dict, batch_scores: BatchScorer,
                     key: jax.Array) -> np.ndarray:
    """Scores `[U, K]` of batch `b` (-inf on padded candidates): replayed from the active score journal when
    it holds them, else computed and journaled with the scorer's counters and the batch's recorded rationales."""
    ids = [str(u) for u in batch["user_ids"]]
    stateful = hasattr(batch_scores, "journal_state")
    payload = section.get(b, ids)
    if payload is not None:
        if stateful:
            batch_scores.restore_journal_state(payload["state"])
        rationale_log.restore(payload["rationales"])
        return np.asarray(journal.decode_floats(payload["scores"]), np.float32)
    s = np.asarray(batch_scores(batch, key), np.float32)
    s = np.where(batch["candidate_index"] >= 0, s, -np.inf)
    section.put(b, ids, {"scores": journal.encode_floats(s), "state": batch_scores.journal_state() if stateful else None,
                         "rationales": rationale_log.recorded(ids)})
    return s


def score_split(sampler: Sampler, llm_state: Any, head_def: Any, head_state: Any, source: SplitSource,
                builder: PromptBuilder, pipeline: PipelineConfig, max_users: int = 0,
                temperature: float = 0.0, seed: int = 0) -> SplitScores:
    """R2Rank scores of the first `max_users` users (0: all) of `source`, in order; greedy rationales by default."""
    head = nnx.merge(head_def, head_state)
    score_fn = jax.jit(lambda h: head(h))

    def batch_scores(batch, key):
        u, k = batch["labels"].shape
        prefixes, suffixes = prompt_lists(batch)
        out = sampler.generate_shared(prefixes, suffixes, SamplingParams.make(u * k, temperature=temperature), key,
                                      state=llm_state)
        rationale_log.record(batch, out.ids, out.valid)          # the eval stage's report sample (else a no-op)
        return to_host(score_fn(out.hidden)).reshape(u, k)   # multi-host: gathered from every process

    return score_batches(batch_scores, source, builder, pipeline, max_users, seed)


def check_users(scores: SplitScores, records) -> np.ndarray:
    """`scores.scores` `[U, K]`, after checking they are of `records`' users, in order."""
    if scores.user_ids != [r.user_id for r in records]:
        raise RuntimeError("scored users differ from the split's first users (pipeline order changed?)")
    return scores.scores


def mean_ndcg(scores: SplitScores, k: int = 10) -> float:
    from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores

    return float(np.mean(ndcg_at_k_from_scores(scores.scores, scores.labels.astype(np.float32), k)))
