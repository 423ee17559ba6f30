"""Verbalizer scoring of a split: log P("Recommend") − log P("Not Recommend") at the answer, after the
model's own greedy rationale (`rationale=True`) or right after the prompt (`r2rank_jax.eval.verbalizer`)."""
from __future__ import annotations

import numpy as np

from r2rank_jax.data.prompt_text import ANSWER_OPEN
from r2rank_jax.eval.pointwise import VerbalizedBatchScorer
from r2rank_jax.eval.verbalizer import decision_scorer
from r2rank_jax.run import builders
from r2rank_jax.run.context import ScoreInput
from r2rank_jax.run.scoring import check_users, score_batches


def verbalized_scores(inp: ScoreInput, run_dir, variant: str, rationale: bool) -> tuple[np.ndarray, dict] | None:
    """Scores `[U, K]` of RUN_DIR's checkpoint (the base model when run_dir is None; None without a checkpoint)
    with the `variant` prompts, and the answer-tag rate when rationales were written."""
    cfg, tok = inp.cfg, inp.tokenizer
    parts = builders.model_from_checkpoint(cfg, tok, inp.mesh, run_dir)
    if parts is None:
        return None
    model, _ = parts
    builder, pipeline = builders.prompts_and_pipeline(
        cfg, tok, inp.wd, batch_users=cfg.eval.decode_users(cfg.rl.batch_users),
        variant=variant)
    # Rows of suffix + tag (zero-shot); after a rationale the answer is read from the decode's cache instead.
    tag = len(tok(ANSWER_OPEN, add_special_tokens=False)["input_ids"])
    sampler = builders.sampler(model, tok, cfg, cfg.eval.max_new_tokens) if rationale else None
    scorer = decision_scorer(model, tok, cfg.data.prefix_buckets,
                             row_buckets=tuple(b + tag for b in cfg.data.suffix_buckets))
    batch_scorer = VerbalizedBatchScorer(scorer, tok, sampler, builders.eos_ids(model, tok))
    scores = score_batches(batch_scorer, inp.source, builder, pipeline, max_users=len(inp.records))
    extra = {} if batch_scorer.tag_rate is None else {"answer_tag_rate": batch_scorer.tag_rate}
    return check_users(scores, inp.records), extra
