"""Which scorers an eval stage runs, the same rule for every method.

A run scores its own method first (the scorer named like the method, when it has one), then
`eval.methods` in order. Each name is a scorer of some registered method: the run's own method's
scorers and the scorers that read no run (zero-shot) are scored; a scorer of another method that
reads that method's checkpoints is skipped with a note (a TALLRec run cannot score `r2rank`). A name
no method offers is a ConfigError.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from r2rank_jax.config import ConfigError, ExperimentConfig
from r2rank_jax.eval import rationale_log
from r2rank_jax.methods import registry
from r2rank_jax.run.context import EvalPlan, ScoreInput


def recorded(name: str, fn: Callable[[ScoreInput], Any]) -> Callable[[ScoreInput], Any]:
    """`fn`, recording the rationales it writes for `rationale_log.sample_users` of the evaluated users."""
    def scorer(inp: ScoreInput) -> Any:
        users = rationale_log.sample_users(inp.user_ids, seed=inp.cfg.seed)   # of every evaluated user
        path = inp.scores_dir / f"{name}{rationale_log.SUFFIX}"
        with rationale_log.recording(path, users, lambda ids: inp.tokenizer.decode(ids, skip_special_tokens=True)):
            return fn(inp)
    return scorer


def eval_plan(cfg: ExperimentConfig) -> EvalPlan:
    method = registry.get(cfg.method)
    own = method.scorers()
    owners = registry.scorer_owners()
    requested = cfg.eval.methods
    order = (cfg.method, *[m for m in requested if m != cfg.method]) if cfg.method in own else tuple(requested)
    unknown = [m for m in order if m not in owners]
    if unknown:
        raise ConfigError(f"eval.methods: unknown method(s) {unknown}; known: {sorted(owners)}")
    scorers, unavailable = {}, {}
    for name in order:
        owner, scorer = owners[name]
        if owner == cfg.method or not scorer.reads_run:
            scorers[name] = recorded(name, scorer.fn)
        else:
            unavailable[name] = f"scored by a run of method {owner!r} (it reads that run's checkpoints)"
    return EvalPlan(order, scorers, unavailable)
