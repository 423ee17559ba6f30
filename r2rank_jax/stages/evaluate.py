"""Stage `eval`: every method on the same saved candidate lists → per-user score files, results.json/md.

The launcher passes the run's `EvalPlan` (r2rank_jax.methods.eval_plan: the run's own method first,
then `eval.methods`; a scorer that reads another method's run is skipped with a note). Each scorer gets
a `ScoreInput` (the run, its tokenizer, the split and its first `eval.max_users` users) and returns
scores `[U, K]` and extra result fields, or None (no checkpoint: skipped with a note).

Other runs (`eval.compare`, ``NAME=WORKDIR``; the ablations, see docs/ablations.md) join the table
as NAME with their own r2rank scores, after `r2rank_jax.eval.compare` has checked that they were
computed on the identical users and candidate lists. Then the configured classic baselines and the
zero-shot listwise baseline (`r2rank_jax.run.listwise`; `eval.listwise=false` leaves it out).
Baselines are scored on the whole split and cut to the evaluated users.

Multi-host (several `jax.distributed` processes): each process scores its own block of the users with
host-local model replicas; process 0 merges the blocks and alone runs the baselines and writes the
results (`r2rank_jax.stages.eval_hosts`); the others return after the merge barrier.

Resumable: every scorer's and the listwise baseline's batches are journaled as they are scored
(WORKDIR/eval/scores/NAME.journal.jsonl, `r2rank_jax.eval.journal`); `--resume` after a kill replays
them and scores only the rest. The journals are removed once results.json is written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

from r2rank_jax import baselines, distributed
from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.eval import compare, journal
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.report import build_results, render_markdown
from r2rank_jax.eval.score_files import write_score_file, write_subset
from r2rank_jax.run import builders as common
from r2rank_jax.run.context import EvalPlan, RunContext, ScoreInput
from r2rank_jax.run.listwise import zero_shot_listwise
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.stages.eval_hosts import HostEval


def _baseline_plan(e) -> dict[str, list[str]]:
    """{baseline: extra CLI args}; bad entries raise ConfigError before any model runs."""
    try:
        return baselines.plan(e.baselines, e.baseline_args)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _baseline_scores(name: str, args: list[str], wd: Workdir, split: str, records, out_dir: pathlib.Path
                     ) -> pathlib.Path:
    import importlib

    full = out_dir / f"{name}.full.jsonl"
    module = importlib.import_module(f"r2rank_jax.baselines.{name}")
    if module.main(["--benchmark", str(wd.benchmark), "--out", str(full), "--split", split, *args]):
        raise RuntimeError(f"eval: baseline {name!r} failed (arguments {args})")
    return write_subset(full, records, out_dir / f"{name}.jsonl")


def _checkpoints(wd: Workdir) -> str:
    """The SFT and RL checkpoints an eval reads, as their step and parameter digest."""
    return "".join(f"{run_dir.name}:{common.checkpoint_digest(run_dir)}\n" for run_dir in (wd.sft, wd.rl))


def _fingerprint(cfg: ExperimentConfig, wd: Workdir, name: str, checkpoints: str | None = None) -> str:
    """What a method's scores depend on: the resolved config, the method and the parameters of the SFT and
    RL checkpoints the eval reads (their step and content digest, `run.builders.checkpoint_digest`). So a
    journal outlives neither a new config nor a checkpoint retrained to other parameters, and replays on
    a run retrained bit for bit (the study's runs continued on a new machine from an archive's journals)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode())
    h.update(name.encode())
    h.update((_checkpoints(wd) if checkpoints is None else checkpoints).encode())
    return h.hexdigest()


def _journal(ctx: RunContext, scores_dir: pathlib.Path, name: str, checkpoints: str):
    """NAME's score journal (`eval.journal`): replayed with `--resume`, else started again."""
    return journal.journaling(scores_dir / f"{name}{journal.SUFFIX}",
                              _fingerprint(ctx.cfg, ctx.wd, name, checkpoints), resume=ctx.resume)


def _drop_journals(scores_dir: pathlib.Path) -> None:
    """After the stage's results are written, the journals have served (a rerun scores afresh)."""
    for f in scores_dir.glob(f"*{journal.SUFFIX}"):
        f.unlink()


def _compared_runs(cfg: ExperimentConfig, plan: EvalPlan) -> dict[str, pathlib.Path]:
    """The compare runs {NAME: WORKDIR}; bad entries raise ConfigError."""
    try:
        return compare.parse_entries(cfg.eval.compare, taken=(*plan.order, *cfg.eval.baselines))
    except compare.CompareError as e:
        raise ConfigError(str(e)) from None


def run(ctx: RunContext, plan: EvalPlan) -> dict:
    cfg, wd = ctx.cfg, ctx.wd
    e = cfg.eval
    compared = _compared_runs(cfg, plan)
    baseline_args = _baseline_plan(e)
    tok = common.tokenizer(cfg, wd, "eval")
    source = common.source(wd, e.split)
    records = source.records[:e.max_users] if e.max_users else source.records
    scores_dir = wd.eval / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    hosts = HostEval(ctx, records)              # one process: every user, files straight into scores_dir
    # The other runs are checked first (on every process): a mismatch fails before any model runs.
    imported = {name: compare.import_run(name, other, wd.benchmark, records, e.split,
                                         (scores_dir if distributed.is_primary() else hosts.scores_dir) / f"{name}.jsonl")
                for name, other in compared.items()}
    paths: dict[str, pathlib.Path] = {}
    extras: dict[str, dict] = {}
    skipped = []
    inp = ScoreInput(hosts.ctx, tok, hosts.source(source), hosts.block, hosts.scores_dir, hosts.user_ids)
    checkpoints = _checkpoints(wd)
    for name in plan.order:
        if name not in plan.scorers:       # another method's checkpoint scorer (plan.unavailable says why)
            skipped.append(name)
            continue
        with _journal(ctx, hosts.scores_dir, name, checkpoints):
            out = plan.scorers[name](inp)
        if out is None:
            skipped.append(name)
            continue
        paths[name] = write_score_file(hosts.scores_dir / f"{name}.jsonl", hosts.block, out[0])
        extras[name] = out[1]
    listwise = ["zero_shot_listwise"] if e.listwise else []
    listwise_parse = None
    if e.listwise:
        listwise_builder, _ = common.prompts_and_pipeline(cfg, tok, wd, batch_users=cfg.eval.decode_users(cfg.rl.batch_users))
        with _journal(ctx, hosts.scores_dir, "zero_shot_listwise", checkpoints):
            _, listwise_parse = zero_shot_listwise(cfg, tok, hosts.ctx.mesh, hosts.block, listwise_builder,
                                                   hosts.scores_dir)
    merged = hosts.merge([*paths, *listwise], extras, listwise_parse)
    if merged is None:                  # multi-host, not process 0: its block is merged there
        # Process 0 is removing the parts directory (this block's journals included) right now:
        # touching it from here races that removal.
        return {"stage": "eval", "process": hosts.index, "scored_users": len(hosts.block)}
    extras, listwise_parse = merged
    paths = {name: scores_dir / f"{name}.jsonl" for name in paths}
    paths |= imported
    for name, args in baseline_args.items():
        paths[name] = _baseline_scores(name, args, wd, e.split, records, scores_dir)
    if not paths:
        raise RuntimeError(f"eval: no method could be scored (skipped for want of a checkpoint: {skipped})")
    for name in listwise:
        paths[name] = scores_dir / f"{name}.jsonl"
    reference = e.reference if e.reference in paths else next(iter(paths))
    per_user, ties = evaluate_score_files(paths, records, e.split)
    manifest = json.loads((wd.benchmark / "manifest.json").read_text())
    bench = {"content_hash": manifest.get("content_hash"), "split": e.split, "path": str(wd.benchmark),
             "num_candidates": cfg.data.num_candidates}
    results = build_results(per_user, reference, bench, ties, seed=cfg.seed,
                            num_candidates=max(len(r.candidates) for r in records))
    if e.listwise:
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
    _drop_journals(hosts.scores_dir)
    print(markdown, end="")
    summary = {"stage": "eval", "results": str(wd.eval / "results.json"),
               "ndcg@10": {m: results["methods"][m]["ndcg@10"] for m in results["methods"]}}
    print(json.dumps(summary))
    return summary
