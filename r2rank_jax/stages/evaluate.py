"""Stage `eval`: every method on the same saved candidate lists → per-user score files, results.json/md.

LLM methods (`eval.methods`, greedy decoding throughout):

- `r2rank`: the RL checkpoint writes its rationale; the scoring head reads the hidden state at the
  decision point.
- `sft_only`: the SFT checkpoint writes its rationale; the score is the verbalizer's
  log P("Recommend") − log P("Not Recommend") at the answer (`r2rank_jax.eval.verbalizer`: the
  rationale is cut right after its ``<answer>`` tag, or the tag is appended). Why not the head: SFT
  never trains it (it is zero-initialized, so every candidate would tie); the paper's SFT-only row is
  the SFT model's own decision, and its answer probability is that decision made graded.
- `zero_shot_pointwise`: the base model with the decision-only (`no_cot`) prompt, no rationale; the
  verbalizer score right after ``<answer>`` (the paper's zero-shot pointwise baseline, P(Recommend)).

The prompts of `r2rank` and `sft_only` are the run's `data.prompt_variant`. A method whose
checkpoint does not exist (e.g. `sft_only` with `sft.steps=0`) is skipped with a note. A baseline run
(`method` other than r2rank, `r2rank_jax.methods`) always scores its own method; `r2rank` and
`sft_only` need R2Rank checkpoints and are skipped there.

Other runs (`eval.compare`, ``NAME=WORKDIR``; the ablations, see docs/ablations.md) join the table
as NAME with their own r2rank scores, after `r2rank_jax.eval.compare` has checked that they were
computed on the identical users and candidate lists. Then the configured classic baselines. Only
the first `eval.max_users` users of the split are evaluated (0: all); baselines are scored on the
whole split and cut to the same users.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
from flax import nnx

from r2rank_jax import methods
from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.data.prompt_text import ANSWER_OPEN
from r2rank_jax.eval import compare
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.pointwise import VerbalizedBatchScorer
from r2rank_jax.eval.report import build_results, render_markdown
from r2rank_jax.eval.score_files import read_score_file, write_score_file
from r2rank_jax.eval.verbalizer import decision_scorer
from r2rank_jax.stages import common
from r2rank_jax.stages.build import build_model
from r2rank_jax.stages.listwise import zero_shot_listwise
from r2rank_jax.stages.scoring import SplitScores, score_batches, score_split
from r2rank_jax.stages.workdir import Workdir


def _model(cfg, tok, mesh, run_dir):
    """(decoder, head) from RUN_DIR's checkpoint (the base model when run_dir is None), or None."""
    model, head = build_model(cfg, tok, mesh)
    if run_dir is not None and common.restore_params(model, head, run_dir) is None:
        return None
    return model, head


def _check_users(scores: SplitScores, records) -> np.ndarray:
    if scores.user_ids != [r.user_id for r in records]:
        raise RuntimeError("scored users differ from the split's first users (pipeline order changed?)")
    return scores.scores


def _r2rank(cfg, wd, tok, mesh, source, records) -> tuple[np.ndarray, dict] | None:
    parts = _model(cfg, tok, mesh, wd.rl)
    if parts is None:
        return None
    model, head = parts
    builder, pipeline = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.rl.batch_users)
    sampler = common.sampler(model, tok, cfg, cfg.eval.max_new_tokens)
    head_def, head_state = nnx.split(head)
    scores = score_split(sampler, None, head_def, head_state, source, builder, pipeline, max_users=len(records))
    return _check_users(scores, records), {}


def _verbalized(cfg, wd, tok, mesh, source, records, run_dir, variant: str, rationale: bool
                ) -> tuple[np.ndarray, dict] | None:
    parts = _model(cfg, tok, mesh, run_dir)
    if parts is None:
        return None
    model, _ = parts
    builder, pipeline = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.rl.batch_users, variant=variant)
    # One row length for both verbalizer methods (suffix + rationale + tag at most): one compile per prefix bucket.
    tag = len(tok(ANSWER_OPEN, add_special_tokens=False)["input_ids"])
    rows = cfg.data.suffix_buckets[-1] + cfg.eval.max_new_tokens + tag
    sampler = common.sampler(model, tok, cfg, cfg.eval.max_new_tokens) if rationale else None
    eos = tuple(i for i in {tok.eos_token_id, *model.config.eos_token_ids} if i is not None)
    scorer = decision_scorer(model, tok, cfg.data.prefix_buckets, row_buckets=(rows,))
    batch_scorer = VerbalizedBatchScorer(scorer, tok, sampler, eos)
    scores = score_batches(batch_scorer, source, builder, pipeline, max_users=len(records))
    extra = {} if batch_scorer.tag_rate is None else {"answer_tag_rate": batch_scorer.tag_rate}
    return _check_users(scores, records), extra


def _sft_only(cfg, wd, tok, mesh, source, records):
    if cfg.sft.steps == 0:
        return None
    return _verbalized(cfg, wd, tok, mesh, source, records, wd.sft, cfg.data.prompt_variant, rationale=True)


def _zero_shot_pointwise(cfg, wd, tok, mesh, source, records):
    return _verbalized(cfg, wd, tok, mesh, source, records, None, "no_cot", rationale=False)


LLM_METHODS = {"r2rank": _r2rank, "sft_only": _sft_only, "zero_shot_pointwise": _zero_shot_pointwise}
# Methods that read the run's own checkpoints: only meaningful in an R2Rank run.
R2RANK_CHECKPOINT_METHODS = ("r2rank", "sft_only")


def llm_methods(cfg: ExperimentConfig) -> dict:
    """{name: scoring function} available to this run: R2Rank's, or a baseline run's own method
    (`r2rank_jax.methods`) plus the checkpoint-free ones."""
    module = methods.baseline_module(cfg.method)
    if module is None:
        return dict(LLM_METHODS)
    out = {k: v for k, v in LLM_METHODS.items() if k not in R2RANK_CHECKPOINT_METHODS}
    if hasattr(module, "score"):
        out[cfg.method] = module.score
    return out


def run_methods(cfg: ExperimentConfig) -> tuple[str, ...]:
    """`eval.methods`, and in a baseline run its own method first (always scored)."""
    if cfg.method == methods.R2RANK:
        return cfg.eval.methods
    return (cfg.method, *[m for m in cfg.eval.methods if m != cfg.method])


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


def _check_config(cfg: ExperimentConfig) -> dict[str, pathlib.Path]:
    """The compare runs {NAME: WORKDIR}; unknown methods and bad entries raise ConfigError."""
    available = llm_methods(cfg)
    unknown = [m for m in cfg.eval.methods if m not in available and m not in R2RANK_CHECKPOINT_METHODS]
    if unknown:
        raise ConfigError(f"eval.methods: unknown method(s) {unknown} for a run of method {cfg.method!r}; "
                          f"known: {sorted(available)}")
    try:
        return compare.parse_entries(cfg.eval.compare, taken=(*cfg.eval.methods, *cfg.eval.baselines))
    except compare.CompareError as e:
        raise ConfigError(str(e)) from None


def run(cfg: ExperimentConfig, wd: Workdir, mesh=None) -> dict:
    e = cfg.eval
    compared = _check_config(cfg)
    tok = common.tokenizer(cfg, wd, "eval")
    source = common.source(wd, e.split)
    records = source.records[:e.max_users] if e.max_users else source.records
    scores_dir = wd.eval / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    # The other runs are checked first: a mismatch fails before any model runs.
    imported = {name: compare.import_run(name, other, wd.benchmark, records, e.split, scores_dir / f"{name}.jsonl")
                for name, other in compared.items()}
    paths: dict[str, pathlib.Path] = {}
    extras: dict[str, dict] = {}
    skipped = []
    available = llm_methods(cfg)
    for name in run_methods(cfg):
        if name not in available:          # an R2Rank checkpoint method in a baseline run
            skipped.append(name)
            continue
        out = available[name](cfg, wd, tok, mesh, source, records)
        if out is None:
            skipped.append(name)
            continue
        paths[name] = write_score_file(scores_dir / f"{name}.jsonl", records, out[0])
        extras[name] = out[1]
    paths |= imported
    for name in e.baselines:
        paths[name] = _baseline_scores(name, wd, e.split, records, scores_dir)
    if not paths:
        raise RuntimeError(f"eval: no method could be scored (skipped for want of a checkpoint: {skipped})")
    listwise_builder, _ = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.rl.batch_users)
    paths["zero_shot_listwise"], listwise_parse = zero_shot_listwise(cfg, tok, mesh, records, listwise_builder, scores_dir)
    reference = e.reference if e.reference in paths else next(iter(paths))
    per_user, ties = evaluate_score_files(paths, records, e.split)
    manifest = json.loads((wd.benchmark / "manifest.json").read_text())
    bench = {"content_hash": manifest.get("content_hash"), "split": e.split, "path": str(wd.benchmark),
             "num_candidates": cfg.data.num_candidates}
    results = build_results(per_user, reference, bench, ties, seed=cfg.seed,
                            num_candidates=max(len(r.candidates) for r in records))
    results["methods"]["zero_shot_listwise"]["parse"] = listwise_parse
    for name, extra in extras.items():
        results["methods"][name].update(extra)
    if compared:
        results["compared_runs"] = {name: str(path) for name, path in compared.items()}
    if skipped:
        results["skipped_methods"] = skipped
    (wd.eval / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(results)
    (wd.eval / "results.md").write_text(markdown)
    print(markdown, end="")
    summary = {"stage": "eval", "results": str(wd.eval / "results.json"),
               "ndcg@10": {m: results["methods"][m]["ndcg@10"] for m in results["methods"]}}
    print(json.dumps(summary))
    return summary
