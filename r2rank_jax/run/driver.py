"""The one training-loop driver of every method's sft/rl stage: metrics logger + checkpointer + `run_loop`."""
from __future__ import annotations

import pathlib
from collections.abc import Callable
from r2rank_jax.run import builders
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.train.loop import LoopConfig, LoopResult, run_loop


def train(wd: Workdir, stage: str, run_dir: pathlib.Path, model, head, loop: LoopConfig, state, step_fn: Callable,
          data_iter, *, best_metric: str | None = None, best_mode: str = "max", put: Callable | None = None,
          eval_fn: Callable | None = None) -> LoopResult:
    """Trains `state` with `step_fn` over `data_iter` (run_loop: resume, SIGTERM save, evaluations), logging
    to WORKDIR/metrics.jsonl as `stage` and checkpointing into RUN_DIR/checkpoints (best kept by `best_metric`)."""
    with builders.logger(wd, stage, loop.total_steps) as logger, \
            builders.checkpointer(run_dir, model, head, best_metric, best_mode) as ckpt:
        return run_loop(loop, state, step_fn, data_iter, logger=logger, checkpointer=ckpt, eval_fn=eval_fn,
                        stage=stage, put=put or (lambda batch: batch))
