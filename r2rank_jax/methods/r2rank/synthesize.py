"""Stage `synthesize`: teacher rationales for train pairs, filtered for a correct decision (see r2rank_jax.teacher)."""
from __future__ import annotations

import json

from r2rank_jax.run.context import RunContext


def run(ctx: RunContext) -> dict:
    from r2rank_jax.run.teacher import run_stage

    cfg, wd = ctx.cfg, ctx.wd
    if cfg.sft.steps == 0:
        summary = {"stage": "synthesize", "skipped": "sft.steps=0: no stage trains on the corpus"}
        print(json.dumps(summary))
        return summary

    stats = run_stage(cfg, wd)
    print(json.dumps({"stage": "synthesize", "corpus": str(wd.teacher / "corpus.jsonl"), "stats": stats}))
    return stats
