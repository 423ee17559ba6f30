"""R2Rank's scorers in the eval stage (greedy decoding throughout).

- `r2rank`: the RL checkpoint writes its rationale; the scoring head reads the hidden state at the
  decision point.
- `sft_only`: the SFT checkpoint writes its rationale; the score is the verbalizer's
  log P("Recommend") − log P("Not Recommend") at the answer (`r2rank_jax.eval.verbalizer`: the
  rationale is cut right after its ``<answer>`` tag, or the tag is appended). Why not the head: SFT
  never trains it (it is zero-initialized, so every candidate would tie); the paper's SFT-only row is
  the SFT model's own decision, and its answer probability is that decision made graded.

`r2rank` uses the RL prompts (`rl.prompt_variant`, default `data.prompt_variant`), `sft_only` the
SFT ones (`data.prompt_variant`); a missing checkpoint (e.g. `sft_only` with
`sft.steps=0`) gives None (skipped with a note).
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from r2rank_jax.methods.r2rank import plans
from r2rank_jax.run import builders
from r2rank_jax.run.context import ScoreInput
from r2rank_jax.run.scoring import check_users, score_split
from r2rank_jax.run.verbalized import verbalized_scores


def r2rank(inp: ScoreInput) -> tuple[np.ndarray, dict] | None:
    cfg, tok = inp.cfg, inp.tokenizer
    parts = builders.model_from_checkpoint(cfg, tok, inp.mesh, inp.wd.rl)
    if parts is None:
        return None
    model, head = parts
    builder, pipeline = builders.prompts_and_pipeline(
        cfg, tok, inp.wd, batch_users=cfg.eval.decode_users(cfg.rl.batch_users),
        variant=plans.rollout_plan(cfg).prompt_variant)
    sampler = builders.sampler(model, tok, cfg, cfg.eval.max_new_tokens)
    head_def, head_state = nnx.split(head)
    scores = score_split(sampler, None, head_def, head_state, inp.source, builder, pipeline,
                         max_users=len(inp.records))
    return check_users(scores, inp.records), {}


def sft_only(inp: ScoreInput) -> tuple[np.ndarray, dict] | None:
    if inp.cfg.sft.steps == 0:
        return None
    return verbalized_scores(inp, inp.wd.sft, inp.cfg.data.prompt_variant, rationale=True)
