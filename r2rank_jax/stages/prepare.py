"""Stage `prepare`: the benchmark (saved candidate lists) and, for the synthetic world, its tokenizer."""
from __future__ import annotations

import json

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.stages.workdir import Workdir


def run(cfg: ExperimentConfig, wd: Workdir, overwrite: bool = False) -> dict:
    d = cfg.data
    if d.source == "synthetic":
        from r2rank_jax.data.synthetic import WorldConfig, build_benchmark

        manifest = build_benchmark(wd.data, WorldConfig(num_users=d.synthetic_users, num_items=d.synthetic_items,
                                                        seed=d.seed),
                                   history_len=d.history_len, num_candidates=d.num_candidates, overwrite=overwrite)
    else:
        from r2rank_jax.data.prepare import prepare

        manifest = prepare(d.source, str(wd.benchmark), seed=d.seed, history_len=d.history_len,
                           num_candidates=d.num_candidates, split=d.split, negatives=d.negatives, overwrite=overwrite)
    if cfg.tokenizer == "synthetic":
        from r2rank_jax.data.tokenizer import train_world_tokenizer

        train_world_tokenizer(wd.benchmark, wd.tokenizer)
    summary = {"stage": "prepare", "benchmark": str(wd.benchmark), "counts": manifest.get("counts"),
               "content_hash": manifest.get("content_hash")}
    print(json.dumps(summary))
    return summary
