"""R2Rank inference: K rationales per user from the sampler (shared prefix), the head on each
rationale's decision-point hidden state → scores `[N, K]` (used by validation and the eval stage)."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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


def score_split(sampler: Sampler, llm_state: Any, head_def: Any, head_state: Any, source: SplitSource,
                builder: PromptBuilder, pipeline: PipelineConfig, max_users: int = 0,
                temperature: float = 0.0, seed: int = 0) -> SplitScores:
    """Scores the first `max_users` users (0: all) of `source`, in order; greedy rationales by default."""
    cfg = dataclasses.replace(pipeline, shuffle=False, num_epochs=1, drop_remainder=False, worker_count=0)
    head = nnx.merge(head_def, head_state)
    score_fn = jax.jit(lambda h: head(h))
    users, cands, scores, labels = [], [], [], []
    key = jax.random.PRNGKey(seed)
    for batch in make_iterator(source, builder, cfg):
        u, k = batch["labels"].shape
        prefixes, suffixes = prompt_lists(batch)
        params = SamplingParams.make(u * k, temperature=temperature)
        key, sub = jax.random.split(key)
        out = sampler.generate_shared(prefixes, suffixes, params, sub, state=llm_state)
        s = np.asarray(score_fn(out.hidden)).reshape(u, k)
        s = np.where(batch["candidate_index"] >= 0, s, -np.inf)
        for i in range(u):
            if batch["example_mask"][i]:
                users.append(str(batch["user_ids"][i]))
                cands.append([str(c) for c in batch["candidate_ids"][i]])
                scores.append(s[i])
                labels.append(batch["labels"][i])
        if max_users and len(users) >= max_users:
            break
    n = max_users or len(users)
    return SplitScores(users[:n], cands[:n], np.stack(scores[:n]).astype(np.float32), np.stack(labels[:n]).astype(np.int32))


def mean_ndcg(scores: SplitScores, k: int = 10) -> float:
    from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores

    return float(np.mean(ndcg_at_k_from_scores(scores.scores, scores.labels.astype(np.float32), k)))
