"""Pointwise fine-tuned LLM baselines: fine-tune the LLM to answer a yes/no-type question about
(user, candidate), then score every candidate by the answer's probability. TALLRec (`methods.tallrec`)
and Prompt4NR (`methods.prompt4nr`) are two `PointwiseMethod`s of this module.

- `sft` stage: training pairs from the train split's saved candidate lists (`pointwise_llm_data`),
  then the shared train loop (checkpoints in WORKDIR/sft, resume, SIGTERM). Loss ``"lm"`` (TALLRec):
  the SFT step's response-only token cross-entropy over the full vocabulary, response = the tokens of
  "Yes" or "No". Loss ``"classes"`` (Prompt4NR): the two-class verbalizer cross-entropy
  (`pointwise_llm_step`). Every `eval_every` steps, NDCG@10 of the scores below on the first
  `eval_users` valid users; the best checkpoint is kept (the last one without evaluation).
- `score`: the best checkpoint; one forward pass per user over the shared prefix and the K candidate
  suffixes (`eval.verbalizer.AnswerScorer.logprobs_shared`), the full-vocabulary log-probs of the
  answer words' first tokens at the answer position → class logits (`pointwise_llm_step`) → the
  method's score: ``"log_odds"`` log P(c=0) − log P(c=1) (TALLRec: log P(Yes) − log P(No)) or
  ``"probability"`` P(c=0) (Prompt4NR). A run without a checkpoint (steps=0) is not scored.

LoRA: the method's `lora` spec unless `model.lora.rank > 0` (`run_config`).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from r2rank_jax.config import ExperimentConfig, PointwiseLLMSpec
from r2rank_jax.eval.verbalizer import AnswerScorer
from r2rank_jax.methods import pointwise_llm_data as data
from r2rank_jax.methods.pointwise_llm_step import make_class_step, pool_words
from r2rank_jax.ranking.metrics import ndcg_at_k_from_scores
from r2rank_jax.methods.protocol import MethodBase, Scorer
from r2rank_jax.run import builders as common, driver
from r2rank_jax.run.build import build_model, model_plan
from r2rank_jax.run.context import RunContext, ScoreInput
from r2rank_jax.run.scoring import check_users, score_batches
from r2rank_jax.train import sft_data
from r2rank_jax.train.logging import to_python
from r2rank_jax.train.loop import LoopConfig
from r2rank_jax.train.optim import OptimConfig, learning_rate_schedule
from r2rank_jax.train.rollout import prompt_lists
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch
from r2rank_jax.train.state import state_shardings


@dataclasses.dataclass(frozen=True)
class PointwiseMethod:
    name: str          # the method name and its ExperimentConfig section
    question: str      # instruction; {yes} / {no} = the first relevant / irrelevant word
    loss: str          # "lm" or "classes" (module docstring)
    all_words: bool    # read every answer word (True) or the first of each class
    score_kind: str    # "log_odds" or "probability"

    def spec(self, cfg: ExperimentConfig) -> PointwiseLLMSpec:
        return getattr(cfg, self.name)


def run_config(cfg: ExperimentConfig, spec: PointwiseLLMSpec) -> ExperimentConfig:
    """`cfg` with the LoRA adapters the method trains: `model.lora` when its rank > 0, else `spec.lora`."""
    lora = cfg.model.lora if cfg.model.lora.rank > 0 else spec.lora
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora=lora))


class Parts:
    """Tokenizer-dependent pieces shared by training and scoring."""

    def __init__(self, method: PointwiseMethod, cfg: ExperimentConfig, tok: Any, items, batch_users: int):
        spec = method.spec(cfg)
        self.builder, self.pipeline = data.prompts_and_pipeline(
            cfg, tok, items, data.question_text(method.question, spec), batch_users)
        self.verbalizer = data.make_verbalizer(tok, self.builder.closing_text(), spec, method.name, method.all_words)
        self.method = method
        self.pad_id = tok.pad_token_id or 0

    def scorer(self, model, cfg: ExperimentConfig) -> AnswerScorer:
        return AnswerScorer(model, [(i,) for i in self.verbalizer.word_ids], cfg.data.prefix_buckets,
                            pad_id=self.pad_id, row_buckets=cfg.data.suffix_buckets)

    def scores(self, word_logprobs: np.ndarray) -> np.ndarray:
        """`[..., A]` first-token log-probs → `[...]` the method's score (module docstring)."""
        c = np.asarray(pool_words(jnp.asarray(word_logprobs), self.verbalizer.word_class))
        if self.method.score_kind == "log_odds":
            return c[..., 0] - c[..., 1]
        return np.asarray(jax.nn.softmax(jnp.asarray(c), axis=-1))[..., 0]

    def split_scores(self, scorer: AnswerScorer, source, max_users: int, state=None):
        """SplitScores of the first `max_users` users (0: all) of `source`."""
        def batch_scores(batch, key):  # noqa: ARG001
            u, k = batch["labels"].shape
            prefixes, suffixes = prompt_lists(batch)
            return self.scores(scorer.logprobs_shared(prefixes, suffixes, state=state)).reshape(u, k)

        return score_batches(batch_scores, source, self.builder, self.pipeline, max_users=max_users)


def loop_config(spec: PointwiseLLMSpec, resume: bool = False, has_eval: bool = True) -> LoopConfig:
    return LoopConfig(total_steps=spec.steps, log_every=max(1, min(10, spec.steps)),
                      eval_every=spec.eval_every if has_eval else 0, save_every=spec.checkpoint_every, resume=resume)


def _skip(stage: str, why: str) -> dict:
    summary = {"stage": stage, "skipped": why}
    print(json.dumps(summary))
    return summary


def train(method: PointwiseMethod, ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    spec = method.spec(cfg)
    if spec.steps == 0:
        return _skip("sft", f"{method.name}.steps=0 (the base model is not scored)")
    tok = common.tokenizer(cfg, wd, "sft")
    train_source = common.source(wd, "train")
    parts = Parts(method, cfg, tok, train_source.items, cfg.rl.batch_users)
    model, head = build_model(run_config(cfg, spec), tok, mesh)
    static, state = common.train_state(model, head, spec.optim, spec.optim, cfg.seed, mesh)
    opt = OptimConfig(**dataclasses.asdict(spec.optim))
    shardings = state_shardings(state) if mesh else None
    v = parts.verbalizer
    if method.loss == "lm":
        step_fn = make_sft_step(static, SFTConfig(), learning_rate_schedule(opt), shardings, mesh)
        response = {1: v.responses[0], 0: v.responses[1]}
    else:
        step_fn = make_class_step(static, v.word_ids, v.word_class, 1, learning_rate_schedule(opt), shardings, mesh)
        response = {1: (v.word_ids[0],), 0: (v.word_ids[v.word_class.index(1)],)}  # placeholder column
    pairs = data.training_pairs(train_source.records, spec.negatives_per_positive, spec.steps * spec.batch_size,
                                cfg.seed)
    examples = data.sft_examples(pairs, parts.builder, response)
    data_cfg = sft_data.SFTDataConfig(
        batch_size=spec.batch_size, seed=cfg.seed, too_long="skip",
        prompt_buckets=tuple(sorted({p + q for p in cfg.data.prefix_buckets for q in cfg.data.suffix_buckets})),
        response_buckets=(max(len(r) for r in response.values()),))
    data_iter = sft_data.make_iterator(examples, data_cfg, parts.pad_id)
    evaluate = None
    if spec.eval_every and spec.eval_users:
        scorer, valid = parts.scorer(model, cfg), common.source(wd, "valid")

        def evaluate(state):
            s = parts.split_scores(scorer, valid, spec.eval_users, state=state.llm)
            return {"valid_ndcg@10": float(np.mean(ndcg_at_k_from_scores(s.scores, s.labels.astype(np.float32), 10)))}

    result = driver.train(wd, "sft", wd.sft, model, head, loop_config(spec, ctx.resume, has_eval=evaluate is not None),
                          state, step_fn, data_iter, best_metric="valid_ndcg@10" if evaluate else None,
                          put=lambda b: put_batch(b, mesh), eval_fn=evaluate)
    summary = {"stage": "sft", "method": method.name, "step": result.step, "preempted": result.preempted,
               "train_pairs": len(examples), "positives": sum(e.label for e in examples),
               "answer_words": dict(zip(v.words, v.word_ids)),
               "last": {k: to_python(x) for k, x in result.last_metrics.items()}}
    print(json.dumps(summary, default=str))
    return summary


def score(method: PointwiseMethod, inp: ScoreInput) -> tuple[np.ndarray, dict] | None:
    cfg, wd, tok, mesh, source, records = inp.cfg, inp.wd, inp.tokenizer, inp.mesh, inp.source, inp.records
    spec = method.spec(cfg)
    model, head = build_model(run_config(cfg, spec), tok, mesh)
    step = common.restore_params(model, head, wd.sft)
    if step is None:
        return None
    parts = Parts(method, cfg, tok, common.source(wd, "train").items, cfg.eval.decode_users(cfg.rl.batch_users))
    s = parts.split_scores(parts.scorer(model, cfg), source, len(records))
    return check_users(s, records), {"checkpoint_step": int(step)}


class PointwiseLLM(MethodBase):
    """A registered pointwise method (TALLRec, Prompt4NR): subclasses set `name`, `summary` and `method`."""
    method: PointwiseMethod

    def sft(self, ctx: RunContext) -> dict:
        return train(self.method, ctx)

    def scorers(self) -> dict[str, Scorer]:
        return {self.name: Scorer(lambda inp: score(self.method, inp))}

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]:
        spec = self.method.spec(cfg)
        return {"model": model_plan(run_config(cfg, spec)), "sft.loop": loop_config(spec),
                "sft.optim": common.optim_config(spec.optim),
                "sft.pairs": {"batch_size": spec.batch_size, "negatives_per_positive": spec.negatives_per_positive,
                              "relevant_words": spec.relevant_words, "irrelevant_words": spec.irrelevant_words,
                              "eval_users": spec.eval_users}}
