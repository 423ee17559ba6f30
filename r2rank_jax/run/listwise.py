"""The zero-shot listwise baseline inside the pipeline: the base model (or a checkpoint), our sampler,
greedy decoding, scores and parse statistics (r2rank_jax.eval.listwise)."""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.data.benchmark import Record, write_jsonl
from r2rank_jax.data.prompts import PromptBuilder
from r2rank_jax.eval.listwise import GenerateFn, ListwiseScores, sampler_generate, score_listwise
from r2rank_jax.eval.score_files import write_score_file
from r2rank_jax.run import builders
from r2rank_jax.sampling.sampler import DEFAULT_BUCKETS

METHOD = "zero_shot_listwise"
BATCH_USERS = 8
# Room for the ranking after any reasoning: "12 > " is at most ~4 tokens per candidate.
TOKENS_PER_CANDIDATE = 4


@dataclasses.dataclass(frozen=True)
class ListwiseSetup:
    generate: GenerateFn
    max_prompt_tokens: int     # whole-prompt budget (oldest history items are dropped beyond it)
    max_new_tokens: int


def listwise_setup(cfg: ExperimentConfig, tok: Any, num_candidates: int, mesh=None, run_dir: pathlib.Path | None = None
                   ) -> ListwiseSetup:
    """Greedy generation for listwise prompts with the base model (or RUN_DIR's checkpoint).

    Budget: the pointwise prefix budget plus K pointwise suffixes (a listwise prompt shows the same
    context once and every candidate), capped by the model's positions and the sampler's buckets.
    """
    parts = builders.model_from_checkpoint(cfg, tok, mesh, run_dir)
    if parts is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
    model, _ = parts
    budget, max_new = listwise_budget(cfg, num_candidates, model.config.max_position_embeddings)
    sampler = builders.sampler(model, tok, cfg, max_new, buckets=builders.budget_buckets(budget))
    return ListwiseSetup(sampler_generate(sampler, tok, seed=cfg.seed), budget, max_new)


def listwise_budget(cfg: ExperimentConfig, num_candidates: int, max_positions: int | None = None) -> tuple[int, int]:
    """(prompt token budget, new tokens) of a listwise prompt of K candidates: the pointwise prefix budget plus
    K pointwise suffixes, capped by the sampler's buckets and (when known) the model's positions."""
    d = cfg.data
    max_new = cfg.eval.max_new_tokens + TOKENS_PER_CANDIDATE * num_candidates
    budget = min(d.prefix_buckets[-1] + num_candidates * d.suffix_buckets[-1], DEFAULT_BUCKETS[-1])
    if max_positions is not None:
        budget = min(budget, max_positions - max_new)
    return budget, max_new


def write_outputs(path: pathlib.Path, records: Sequence[Record], result: ListwiseScores) -> pathlib.Path:
    """The raw outputs, one line per user: {"user_id", "status", "text"} (the run report shows them)."""
    write_jsonl(path, ({"user_id": r.user_id, "status": p.status, "text": t}
                       for r, p, t in zip(records, result.parses, result.texts)))
    return path


def listwise_scores(setup: ListwiseSetup, records: Sequence[Record], builder: PromptBuilder,
                    orders: Sequence[Sequence[int]] | None = None) -> ListwiseScores:
    return score_listwise(records, builder, setup.generate, orders, setup.max_prompt_tokens,
                          batch_size=min(BATCH_USERS, len(records)))


def zero_shot_listwise(cfg: ExperimentConfig, tok: Any, mesh, records: Sequence[Record], builder: PromptBuilder,
                       scores_dir: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """The eval stage's `zero_shot_listwise` method: (score file, parse statistics for results.json).
    The raw outputs go to SCORES_DIR/zero_shot_listwise.outputs.jsonl (user, status, text)."""
    k = max(len(r.candidates) for r in records)
    result = listwise_scores(listwise_setup(cfg, tok, k, mesh), records, builder)
    path = write_score_file(scores_dir / f"{METHOD}.jsonl", records, result.scores)
    write_outputs(scores_dir / f"{METHOD}.outputs.jsonl", records, result)
    return path, result.stats.as_dict()
