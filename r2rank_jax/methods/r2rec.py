"""R2Rec (interaction-of-thought) as a baseline method: stages synthesize, sft, rl and score.

- ``synthesize``: chains (`r2rec_chains`, graph of the train histories) and prompts (`r2rec_prompts`)
  of the train users, traces by answer-conditioned progressive masked prompting (`r2rec_teacher`;
  the scripted chain teacher on the synthetic world, else the configured local/OpenAI teacher) →
  WORKDIR/teacher/r2rec_corpus.jsonl and r2rec_stats.json.
- ``sft``: token cross-entropy of the traces (train/sft.py step, sft_data batches, the shared loop);
  checkpoints in WORKDIR/sft. No accepted trace → the stage is skipped (RL starts from the base model).
- ``rl``: GRPO (`r2rec_grpo`): per step `rl.batch_users` train users × `r2rec.group_size` sampled
  outputs, reward 1·r_step + 2·r_rank (`r2rec_rewards`), group z-scored advantages; checkpoints in
  WORKDIR/rl. Starts from the SFT checkpoint when there is one.
- ``score``: greedy output of the RL (else SFT, else base) model → `parse_listwise` →
  `ranking_scores` (unparsable: the positive ranked last).
"""
from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.data.benchmark import write_jsonl
from r2rank_jax.data.prompts import PromptBuilder
from r2rank_jax.data.textio import iter_jsonl
from r2rank_jax.eval import journal
from r2rank_jax.eval.listwise import ParseStats, parse_listwise, ranking_scores
from r2rank_jax.methods import r2rec_prompts
from r2rank_jax.methods.r2rec_chains import ChainGraph
from r2rank_jax.methods.r2rec_grpo import KEYS as GRPO_KEYS, make_grpo_step
from r2rank_jax.methods.r2rec_rewards import RewardWeights, group_advantages, step_reward, total_reward
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax import distributed
from r2rank_jax.methods.protocol import MethodBase, Scorer
from r2rank_jax.methods.registry import register
from r2rank_jax.run import builders as common, driver, seeds
from r2rank_jax.run.build import build_model
from r2rank_jax.run.context import RunContext, ScoreInput
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.sampling.sampler import DEFAULT_BUCKETS, Sampler
from r2rank_jax.train import sft_data
from r2rank_jax.train.logging import to_python
from r2rank_jax.train.loop import LoopConfig
from r2rank_jax.train.sft import put_batch
from r2rank_jax.train.state import state_shardings

METHOD = "r2rec"
CORPUS = "r2rec_corpus.jsonl"
LEDGER = "r2rec_ledger.jsonl"   # per user: the teacher's outputs and the verdict
SCORE_BATCH = 8


# ------------------------------------------------------------------------------------------ shared pieces


def prompt_budget(cfg: ExperimentConfig, num_candidates: int, max_positions: int | None = None) -> int:
    """Whole-prompt token budget: `r2rec.max_prompt_tokens`, else the listwise one (run/listwise.py)."""
    if cfg.r2rec.max_prompt_tokens:
        return cfg.r2rec.max_prompt_tokens
    d = cfg.data
    budget = min(d.prefix_buckets[-1] + num_candidates * d.suffix_buckets[-1], DEFAULT_BUCKETS[-1])
    if max_positions is not None:
        budget = min(budget, max_positions - cfg.r2rec.max_new_tokens)
    return budget


def builder(cfg: ExperimentConfig, tok: Any, wd: Workdir) -> PromptBuilder:
    return PromptBuilder(tok, common.source(wd, "train").items, common.prompt_config(cfg, max_prompt_tokens=None))


def graph(cfg: ExperimentConfig, wd: Workdir) -> ChainGraph:
    return ChainGraph.from_records(common.source(wd, "train").records, cfg.r2rec.max_item_users, cfg.seed)


def user_prompts(cfg: ExperimentConfig, b: PromptBuilder, g: ChainGraph, records, budget: int
                 ) -> list[r2rec_prompts.R2RecPrompt]:
    r = cfg.r2rec
    return [r2rec_prompts.build(b, rec, g.sample(rec.user_id, rec.history, r.chains_per_user, cfg.seed),
                                r.recent_items, budget) for rec in records]


def make_sampler(model, tok: Any, max_new_tokens: int, budget: int) -> Sampler:
    return common.sampler(model, tok, None, max_new_tokens, buckets=common.budget_buckets(budget))


def _emit(summary: dict) -> dict:
    print(json.dumps(summary, default=str))
    return summary


# ------------------------------------------------------------------------------------------ synthesize


def make_chain_teacher(cfg: ExperimentConfig, wd: Workdir, b: PromptBuilder, tok: Any):
    """The scripted chain teacher (synthetic world), the grounded chain teacher (real data's titles) or
    the configured local/OpenAI teacher."""
    titles = {i: b.item_text(i) for i in b.items}
    if cfg.teacher.kind == "grounded":
        from r2rank_jax.data.benchmark import load_split
        from r2rank_jax.methods.r2rec_grounded import GroundedChainTeacher
        from r2rank_jax.teacher.grounded_evidence import EvidenceIndex

        return GroundedChainTeacher(EvidenceIndex.from_split(titles, load_split(wd.benchmark, "train"))), titles
    if cfg.teacher.kind == "scripted":
        from r2rank_jax.data.synthetic import load_item_attributes
        from r2rank_jax.methods.r2rec_teacher import ScriptedChainTeacher

        return ScriptedChainTeacher(load_item_attributes(wd.benchmark), titles, cfg.teacher.noise, cfg.seed), titles
    from r2rank_jax.teacher.factory import make_teacher
    from r2rank_jax.run.teacher import from_experiment

    spec, _, _ = from_experiment(cfg)
    teacher, _ = make_teacher(spec, wd.benchmark, tokenizer=tok)
    return teacher, titles


def synthesize(ctx: RunContext) -> dict:
    cfg, wd = ctx.cfg, ctx.wd
    from r2rank_jax.methods.r2rec_teacher import ChainPair, progressive_traces

    tok = common.tokenizer(cfg, wd, "synthesize")
    b = builder(cfg, tok, wd)
    records = common.source(wd, "train").records
    if cfg.r2rec.teacher_users:
        records = records[:cfg.r2rec.teacher_users]
    k = max(len(r.candidates) for r in records)
    prompts = user_prompts(cfg, b, graph(cfg, wd), records, prompt_budget(cfg, k))
    teacher, titles = make_chain_teacher(cfg, wd, b, tok)
    pairs = [ChainPair(record=r, candidate=r.positive, label=1, history=p.items, user_message=p.message,
                       prompt=p.text, chains=p.chains, items=p.items) for r, p in zip(records, prompts)]
    try:
        traces, stats = progressive_traces(teacher, list(zip(prompts, pairs)), titles)
    finally:
        teacher.close()
    wd.teacher.mkdir(parents=True, exist_ok=True)
    write_jsonl(wd.teacher / CORPUS, traces)
    write_jsonl(wd.teacher / LEDGER, stats.log.values())
    with_chains = sum(bool(p.chains) for p in prompts)
    summary = {"stage": "synthesize", "method": METHOD, "corpus": str(wd.teacher / CORPUS), "teacher": teacher.name,
               "users_with_chains": with_chains, **stats.as_dict()}
    (wd.teacher / "r2rec_stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    return _emit(summary)


# ------------------------------------------------------------------------------------------ sft


def load_traces(path, tok) -> list[sft_data.SFTExample]:
    out = []
    for n, obj in iter_jsonl(path):
        for key in ("user_id", "candidate", "prompt_ids", "response"):
            if key not in obj:
                raise ValueError(f"{path}:{n}: missing field {key!r}")
        response = list(tok(obj["response"], add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]
        out.append(sft_data.SFTExample(obj["user_id"], obj["candidate"], 1, tuple(obj["prompt_ids"]),
                                       tuple(response), f"{path}:{n}"))
    return out


def sft_loop(cfg: ExperimentConfig, resume: bool = False) -> LoopConfig:
    s = cfg.sft
    return LoopConfig(total_steps=s.steps, log_every=max(1, min(10, s.eval_every)), save_every=s.checkpoint_every,
                      resume=resume)


def sft(ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    s = cfg.sft
    if s.steps == 0:
        return _emit({"stage": "sft", "skipped": "sft.steps=0 (RL starts from the base model)"})
    tok = common.tokenizer(cfg, wd, "sft")
    examples = load_traces(wd.require(wd.teacher / CORPUS, "sft", "synthesize"), tok)
    if not examples:
        return _emit({"stage": "sft", "skipped": f"{wd.teacher / CORPUS} holds no accepted trace (RL starts from "
                                                 "the base model)"})
    model, head = build_model(cfg, tok, mesh)
    static, state, step_fn = common.sft_state_and_step(model, head, s.optim, s.microbatches, cfg.seed, mesh)
    longest = max(len(e.prompt_ids) for e in examples)
    p_buckets = tuple(b for b in DEFAULT_BUCKETS if b < longest) + (longest,)
    data_cfg = sft_data.SFTDataConfig(batch_size=min(s.batch_size, len(examples)), seed=cfg.seed, too_long="skip",
                                      prompt_buckets=p_buckets, response_buckets=cfg.r2rec.response_buckets)
    data_iter = sft_data.make_iterator(examples, data_cfg, tok.pad_token_id)
    result = driver.train(wd, "sft", wd.sft, model, head, sft_loop(cfg, ctx.resume), state, step_fn, data_iter,
                          put=lambda batch: put_batch(batch, mesh))
    return _emit({"stage": "sft", "method": METHOD, "step": result.step, "preempted": result.preempted,
                  "train_examples": len(examples),
                  "last": {k: to_python(v) for k, v in result.last_metrics.items()}})


# ------------------------------------------------------------------------------------------ rl


class UserCycle:
    """Batches of `batch_users` train-user indices from a seeded permutation, cycled; checkpointable."""

    def __init__(self, num_users: int, batch_users: int, seed: int):
        self.order = np.random.default_rng(seed).permutation(num_users)
        self.batch_users, self.position = batch_users, 0

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        idx = self.order[(self.position + np.arange(self.batch_users)) % len(self.order)]
        self.position += self.batch_users
        return idx

    def get_state(self) -> bytes:
        return json.dumps({"position": self.position}).encode()

    def set_state(self, state: bytes) -> None:
        self.position = json.loads(state)["position"]


def rl_loop(cfg: ExperimentConfig, resume: bool = False) -> LoopConfig:
    r = cfg.rl
    return LoopConfig(total_steps=r.steps, log_every=max(1, min(10, r.eval_every)), save_every=r.checkpoint_every,
                      resume=resume)


def rl(ctx: RunContext) -> dict:
    cfg, wd, mesh = ctx.cfg, ctx.wd, ctx.mesh
    r, x = cfg.rl, cfg.r2rec
    tok = common.tokenizer(cfg, wd, "rl")
    model, head = common.model_from_sft_or_base(cfg, wd, tok, mesh)
    static, state = common.train_state(model, head, r.llm_optim, r.head_optim, cfg.seed, mesh)
    records = common.source(wd, "train").records
    k = max(len(rec.candidates) for rec in records)
    budget = prompt_budget(cfg, k, model.config.max_position_embeddings)
    b, chain_graph, built = builder(cfg, tok, wd), graph(cfg, wd), {}

    def prompt_of(u: int) -> r2rec_prompts.R2RecPrompt:    # built when first drawn: 40k users take minutes
        if u not in built:
            built[u] = user_prompts(cfg, b, chain_graph, [records[u]], budget)[0]
        return built[u]

    sampler = make_sampler(model, tok, x.max_new_tokens, budget)
    step_fn = make_grpo_step(static, x.clip_eps, state_shardings(state) if mesh else None, mesh)
    weights = RewardWeights(x.step_weight, x.rank_weight)
    g = x.group_size
    collate = sft_data.Collate(r.batch_users * g, sampler.config.buckets,
                               tuple(sorted({b for b in DEFAULT_BUCKETS if b < x.max_new_tokens} | {x.max_new_tokens})),
                               tok.pad_token_id or 0)

    def rl_step(state, users: np.ndarray):
        batch_prompts = [prompt_of(int(u)) for u in users for _ in range(g)]
        key = seeds.step_key(cfg.seed, seeds.R2REC_ROLLOUT, int(jax.device_get(state.step)))
        out = sampler.generate([list(p.ids) for p in batch_prompts],
                               SamplingParams.make(len(batch_prompts), temperature=r.temperature), key, state=state.llm)
        ids, valid = np.asarray(out.ids), np.asarray(out.valid)
        responses = [row[ok].tolist() or [tok.eos_token_id] for row, ok in zip(ids, valid)]
        texts = tok.batch_decode(responses, skip_special_tokens=True)
        parts = np.array([total_reward(t, len(p.chains), len(p.items), k, p.positive_index, weights)
                          for t, p in zip(texts, batch_prompts)])                      # [U*G, 3]
        adv = group_advantages(parts[:, 0].reshape(len(users), g)).reshape(-1)
        batch = collate([sft_data.SFTExample(p.user_id, "", 1, p.ids, tuple(resp))
                         for p, resp in zip(batch_prompts, responses)])
        batch["advantages"] = adv.astype(np.float32)
        state, metrics = step_fn(state, distributed.put_batch({key_: batch[key_] for key_ in GRPO_KEYS}, mesh))
        parsed = np.mean([parse_listwise(t, k).status != "unparsable" for t in texts])
        return state, {**metrics, "reward": float(parts[:, 0].mean()), "reward_step": float(parts[:, 1].mean()),
                       "reward_rank": float(parts[:, 2].mean()), "parse_rate": float(parsed)}

    result = driver.train(wd, "rl", wd.rl, model, head, rl_loop(cfg, ctx.resume), state, rl_step,
                          UserCycle(len(records), r.batch_users, cfg.seed))
    return _emit({"stage": "rl", "method": METHOD, "step": result.step, "preempted": result.preempted,
                  "last": {key_: to_python(v) for key_, v in result.last_metrics.items()}})


# ------------------------------------------------------------------------------------------ score


def score(inp: ScoreInput) -> tuple[np.ndarray, dict]:
    """Per-candidate scores `[U, K]` of the greedy R2Rec output (module docstring) and parse statistics."""
    cfg, wd, tok, mesh, records = inp.cfg, inp.wd, inp.tokenizer, inp.mesh, inp.records
    from r2rank_jax.eval.listwise import sampler_generate

    model, head = build_model(cfg, tok, mesh)
    loaded = "base"
    for name, run_dir in (("rl", wd.rl), ("sft", wd.sft)):
        if common.restore_params(model, head, run_dir) is not None:
            loaded = name
            break
    k = max(len(r.candidates) for r in records)
    budget = prompt_budget(cfg, k, model.config.max_position_embeddings)
    prompts = user_prompts(cfg, builder(cfg, tok, wd), graph(cfg, wd), records, budget)
    generate = sampler_generate(make_sampler(model, tok, cfg.r2rec.max_new_tokens, budget), tok, seed=cfg.seed)
    batch = min(SCORE_BATCH, len(prompts))
    texts: list[str] = []
    section = journal.section()                  # inside the eval stage: each batch's outputs journaled, replayed
    for b, lo in enumerate(range(0, len(prompts), batch)):
        chunk = [list(p.ids) for p in prompts[lo:lo + batch]]
        users = [r.user_id for r in records[lo:lo + batch]]
        payload = journal.replay_or_compute(section, b, users, lambda chunk=chunk: {
            "texts": generate(chunk + [chunk[0]] * (batch - len(chunk)))[:len(chunk)]})
        texts.extend(payload["texts"])
    stats, rows, steps = ParseStats(), [], []
    for p, rec, text in zip(prompts, records, texts):
        parse = parse_listwise(text, len(rec.candidates))
        stats.add(parse)
        rows.append(ranking_scores(parse, len(rec.candidates), p.positive_index))
        steps.append(step_reward(text, len(p.chains), len(p.items)))
    inp.scores_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(inp.scores_dir / f"{METHOD}.outputs.jsonl",
                ({"user_id": rec.user_id, "chains": len(p.chains), "text": t}
                 for rec, p, t in zip(records, prompts, texts)))
    extra = {"parse": stats.as_dict(), "model": loaded, "mean_step_reward": float(np.mean(steps)),
             "users_with_chains": int(sum(bool(p.chains) for p in prompts))}
    return np.stack(rows), extra


@register
class R2Rec(MethodBase):
    name = "r2rec"
    summary = "R2Rec interaction-of-thought: chain traces, progressive masked SFT, GRPO (listwise output)"

    def synthesize(self, ctx: RunContext) -> dict:
        return synthesize(ctx)

    def sft(self, ctx: RunContext) -> dict:
        return sft(ctx)

    def rl(self, ctx: RunContext) -> dict:
        return rl(ctx)

    def scorers(self) -> dict[str, Scorer]:
        return {"r2rec": Scorer(score)}

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]:
        return {"r2rec": cfg.r2rec, "sft.loop": sft_loop(cfg), "rl.loop": rl_loop(cfg),
                "rewards": RewardWeights(cfg.r2rec.step_weight, cfg.r2rec.rank_weight)}
