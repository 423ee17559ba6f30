"""Stage `eval`: every method on the same saved candidate lists → per-user score files, results.json/md.

Methods: `r2rank` (the RL checkpoint), `sft_only` (the SFT checkpoint), `zero_shot` (the base model
with an untrained head: every candidate ties, so it scores the random expectation — the pointwise
P(Recommend) zero-shot baseline is future work), the configured classic baselines, and
`zero_shot_listwise` (stages/listwise.py; its parse statistics go into results.json). Only the first
`eval.max_users` users of the split are evaluated (0: all); baselines are scored on the whole split
and cut to the same users.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
from flax import nnx

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.report import build_results, render_markdown
from r2rank_jax.eval.score_files import read_score_file, write_score_file
from r2rank_jax.stages import common
from r2rank_jax.stages.build import build_model
from r2rank_jax.stages.listwise import zero_shot_listwise
from r2rank_jax.stages.scoring import score_split
from r2rank_jax.stages.workdir import Workdir


def _llm_scores(cfg, wd, tok, mesh, run_dir, records, source, builder, pipeline) -> np.ndarray | None:
    model, head = build_model(cfg, tok, mesh)
    if run_dir is not None and common.restore_params(model, head, run_dir) is None:
        return None
    sampler = common.sampler(model, tok, cfg, cfg.eval.max_new_tokens)
    head_def, head_state = nnx.split(head)
    scores = score_split(sampler, None, head_def, head_state, source, builder, pipeline, max_users=len(records))
    if scores.user_ids != [r.user_id for r in records]:
        raise RuntimeError("scored users differ from the split's first users (pipeline order changed?)")
    return scores.scores


def _baseline_scores(name: str, wd: Workdir, split: str, records, out_dir: pathlib.Path) -> pathlib.Path:
    import importlib

    full = out_dir / f"{name}.full.jsonl"
    module = importlib.import_module(f"r2rank_jax.baselines.{name}")
    module.main(["--benchmark", str(wd.benchmark), "--out", str(full), "--split", split])
    score_file = read_score_file(full)
    by_user = dict(zip(score_file.user_ids, score_file.scores))
    path = out_dir / f"{name}.jsonl"
    write_score_file(path, records, np.asarray([by_user[r.user_id] for r in records]))
    return path


def run(cfg: ExperimentConfig, wd: Workdir, mesh=None) -> dict:
    e = cfg.eval
    tok = common.tokenizer(cfg, wd, "eval")
    source = common.source(wd, e.split)
    records = source.records[:e.max_users] if e.max_users else source.records
    builder, pipeline = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.rl.batch_users)
    scores_dir = wd.eval / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, pathlib.Path] = {}
    for name, run_dir in (("r2rank", wd.rl), ("sft_only", wd.sft), ("zero_shot", None)):
        scores = _llm_scores(cfg, wd, tok, mesh, run_dir, records, source, builder, pipeline)
        if scores is not None:
            paths[name] = write_score_file(scores_dir / f"{name}.jsonl", records, scores)
    for name in e.baselines:
        paths[name] = _baseline_scores(name, wd, e.split, records, scores_dir)
    paths["zero_shot_listwise"], listwise_parse = zero_shot_listwise(cfg, tok, mesh, records, builder, scores_dir)
    reference = e.reference if e.reference in paths else next(iter(paths))
    per_user, ties = evaluate_score_files(paths, records, e.split)
    manifest = json.loads((wd.benchmark / "manifest.json").read_text())
    bench = {"content_hash": manifest.get("content_hash"), "split": e.split, "path": str(wd.benchmark),
             "num_candidates": cfg.data.num_candidates}
    results = build_results(per_user, reference, bench, ties, seed=cfg.seed,
                            num_candidates=max(len(r.candidates) for r in records))
    results["methods"]["zero_shot_listwise"]["parse"] = listwise_parse
    (wd.eval / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(results)
    (wd.eval / "results.md").write_text(markdown)
    print(markdown, end="")
    summary = {"stage": "eval", "results": str(wd.eval / "results.json"),
               "ndcg@10": {m: results["methods"][m]["ndcg@10"] for m in results["methods"]}}
    print(json.dumps(summary))
    return summary
