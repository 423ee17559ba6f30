"""Stage `sft`: the self-reflective warm start on the filtered teacher corpus (paper §3.4).

Reads WORKDIR/teacher/corpus.jsonl, holds out the examples of every 10th user for evaluation
(response loss, Recommend/Not Recommend decision accuracy), trains with the shared loop (resume,
SIGTERM checkpoint), keeps the best checkpoint by held-out loss in WORKDIR/sft/checkpoints.

`sft.steps=0` skips the stage (the RL-only ablation: RL then starts from the base model). With
`data.prompt_variant="no_cot"` (the without-CoT ablation) every corpus example becomes a
decision-only one: the `no_cot` prompt of the same (user, candidate), built like the RL/eval prompts,
and the response ``<answer>{decision}</answer>`` alone (the teacher's filtered decision, i.e. the
label's), so SFT teaches the decision without the rationale.
"""
from __future__ import annotations

import dataclasses
import json
import zlib

from r2rank_jax import distributed
from r2rank_jax.config import ExperimentConfig
from r2rank_jax.methods.r2rank import plans
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.prompts import UserPrompts
from r2rank_jax.run import builders as common, driver
from r2rank_jax.run.build import build_model
from r2rank_jax.run.context import RunContext
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.teacher.prompts import answer_tag
from r2rank_jax.train import sft_data
from r2rank_jax.train.logging import to_python
from r2rank_jax.train.sft import put_batch
from r2rank_jax.train.sft_eval import make_sft_eval


def held_out(user_id: str) -> bool:
    """Deterministic 1-in-10 user split for SFT evaluation (stable across runs and machines)."""
    return zlib.crc32(user_id.encode()) % 10 == 0


def decision_only(examples: list[sft_data.SFTExample], cfg: ExperimentConfig, tok, wd: Workdir
                  ) -> list[sft_data.SFTExample]:
    """The examples with `no_cot` prompts and ``<answer>{decision}</answer>`` responses (module docstring)."""
    builder, _ = common.prompts_and_pipeline(cfg, tok, wd, batch_users=1, variant="no_cot")
    records = {r.user_id: r for r in common.source(wd, "train").records}
    built: dict[str, UserPrompts] = {}
    encode = lambda text: list(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    answers = {label: encode(answer_tag(RECOMMEND if label else NOT_RECOMMEND)) + [tok.eos_token_id]
               for label in (0, 1)}
    out = []
    for ex in examples:
        record = records.get(ex.user_id)
        if record is None or ex.candidate not in record.candidates:
            raise ValueError(f"{ex.where}: ({ex.user_id!r}, {ex.candidate!r}) is not a train-split user and candidate")
        if ex.user_id not in built:
            built[ex.user_id] = builder.build(record)
        prompt = built[ex.user_id].prompt_ids(record.candidates.index(ex.candidate))
        out.append(dataclasses.replace(ex, prompt_ids=tuple(prompt), response_ids=tuple(answers[ex.label])))
    return out


def run(ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    s = cfg.sft
    if s.steps == 0:
        summary = {"stage": "sft", "skipped": "sft.steps=0 (RL starts from the base model)"}
        print(json.dumps(summary))
        return summary
    tok = common.tokenizer(cfg, wd, "sft")
    corpus = wd.require(wd.teacher / "corpus.jsonl", "sft", "synthesize")
    model, head = build_model(cfg, tok, mesh)
    static, state, step_fn = common.sft_state_and_step(model, head, s.optim, s.microbatches, cfg.seed, mesh,
                                                       s.shared_prefix)
    examples = sft_data.load_corpus(corpus, tok)
    if cfg.data.prompt_variant == "no_cot":
        examples = decision_only(examples, cfg, tok, wd)
    train = [e for e in examples if not held_out(e.user_id)]
    evals = [e for e in examples if held_out(e.user_id)]
    if not train:
        raise ValueError(f"{corpus}: no training examples (the teacher filter accepted nothing?)")
    # Multi-host: this host reads only its block of every global batch of sft.batch_size rows.
    shard_index, shard_count = distributed.host_batch_shard(mesh)
    data_cfg = dataclasses.replace(plans.sft_data_config(cfg), shard_index=shard_index, shard_count=shard_count,
                                   batch_size=distributed.host_batch_size(s.batch_size, mesh, "sft.batch_size"))
    data_iter = sft_data.make_iterator(train, data_cfg, tok.pad_token_id)
    eval_fn = make_sft_eval(static, evals, tok, data_cfg, s.batch_size, mesh) if evals else None
    result = driver.train(wd, "sft", wd.sft, model, head, plans.sft_loop(cfg, ctx.resume, has_eval=bool(evals)),
                          state, step_fn, data_iter, best_metric="eval_loss" if evals else None, best_mode="min",
                          put=lambda b: put_batch(b, mesh), eval_fn=eval_fn)
    summary = {"stage": "sft", "step": result.step, "preempted": result.preempted, "train_examples": len(train),
               "eval_examples": len(evals), "last": {k: to_python(v) for k, v in result.last_metrics.items()}}
    print(json.dumps(summary, default=str))
    return summary
