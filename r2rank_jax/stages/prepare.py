"""Stage `prepare`: the benchmark (saved candidate lists) and, for the synthetic world, its tokenizer."""
from __future__ import annotations

import json

from typing import Any

from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.run.context import RunContext


def plan(cfg: ExperimentConfig) -> dict[str, Any]:
    """What `prepare` builds from `cfg`: the synthetic world or the prepare() arguments, and whether it trains
    the world's tokenizer. The synthetic world has a user split only (uniform or popularity negatives): asking
    it for another split is an error rather than silently ignored."""
    from r2rank_jax.data.synthetic import WorldConfig

    d = cfg.data
    out: dict[str, Any] = {"history_len": d.history_len, "num_candidates": d.num_candidates,
                           "train_tokenizer": cfg.tokenizer == "synthetic"}
    if d.source == "synthetic":
        if d.split != "user":
            raise ConfigError(f"data.split={d.split!r}: the synthetic world has a user split only (set data.source "
                              "to a prepared input)")
        out["world"] = WorldConfig(num_users=d.synthetic_users, num_items=d.synthetic_items, seed=d.seed)
        out["negatives"] = d.negatives
    else:
        out["prepare"] = {"source": d.source, "seed": d.seed, "split": d.split, "negatives": d.negatives}
    return out


def run(ctx: RunContext) -> dict:
    cfg, wd, overwrite = ctx.cfg, ctx.wd, ctx.overwrite
    p = plan(cfg)
    if "world" in p:
        from r2rank_jax.data.synthetic import build_benchmark

        manifest = build_benchmark(wd.data, p["world"], history_len=p["history_len"],
                                   num_candidates=p["num_candidates"], negatives=p["negatives"],
                                   overwrite=overwrite)
    else:
        from r2rank_jax.data.prepare import prepare

        a = p["prepare"]
        manifest = prepare(a["source"], str(wd.benchmark), seed=a["seed"], history_len=p["history_len"],
                           num_candidates=p["num_candidates"], split=a["split"], negatives=a["negatives"],
                           overwrite=overwrite)
    if p["train_tokenizer"]:
        from r2rank_jax.data.tokenizer import train_world_tokenizer

        train_world_tokenizer(wd.benchmark, wd.tokenizer)
    summary = {"stage": "prepare", "benchmark": str(wd.benchmark), "counts": manifest.get("counts"),
               "content_hash": manifest.get("content_hash")}
    print(json.dumps(summary))
    return summary
