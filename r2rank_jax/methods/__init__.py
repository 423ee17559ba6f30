"""Trainable LLM baselines (issue 9) that run through the same launcher as R2Rank.

`ExperimentConfig.method` picks what a run trains: "r2rank" (the paper's method, `r2rank_jax.stages`)
or one of the baselines registered here. A baseline is a module that defines any of the stage
functions below; a stage it does not define is skipped with a note (TALLRec has no `rl` stage):

- `synthesize(cfg, wd) -> dict`                 its training corpus (default: R2Rank's teacher corpus)
- `sft(cfg, wd, mesh, resume) -> dict`          supervised stage, checkpoints in WORKDIR/sft
- `rl(cfg, wd, mesh, resume) -> dict`           RL stage, checkpoints in WORKDIR/rl
- `score(cfg, wd, tok, mesh, source, records) -> (scores [U, K] float, extra dict) | None`
      the per-candidate scores of the trained model on `records` (higher = ranked first); the eval stage
      writes them as WORKDIR/eval/scores/<method>.jsonl, next to the run's other methods

`prepare` and `eval` are shared: every method is evaluated on the same saved candidate lists, and an
R2Rank run brings a baseline run into its table with `--config.eval.compare=NAME=WORKDIR`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

R2RANK = "r2rank"
# method name -> module implementing its stages
BASELINES: dict[str, str] = {
    "r2ec": "r2rank_jax.methods.r2ec",
    "r2rec": "r2rank_jax.methods.r2rec",
    "prompt4nr": "r2rank_jax.methods.prompt4nr",
    "tallrec": "r2rank_jax.methods.tallrec",
}


def known() -> tuple[str, ...]:
    return (R2RANK, *sorted(BASELINES))


def baseline_module(method: str) -> ModuleType | None:
    """The module of baseline `method`; None for R2Rank itself. Unknown names raise ValueError."""
    if method == R2RANK:
        return None
    if method not in BASELINES:
        raise ValueError(f"method: unknown method {method!r}; known: {', '.join(known())}")
    return importlib.import_module(BASELINES[method])
