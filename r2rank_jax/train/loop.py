"""The training loop shared by SFT and RL: batches -> step -> log -> eval -> checkpoint, with resume
and a clean exit on SIGTERM (preemptible TPU VMs).

    result = run_loop(LoopConfig(total_steps=1000, save_every=100, eval_every=50, resume=True),
                      state, train_step, data_iter, logger=logger, checkpointer=ckpt,
                      put=lambda b: put_batch(b, mesh), eval_fn=evaluate)
    sys.exit(0)   # also after a preemption: result.preempted tells which

- **Resume**: without ``resume``, a checkpoint directory that already holds steps is an error (a new
  run would silently mix with the old one). With ``resume`` and a finished checkpoint in the checkpointer's directory, the state is
  restored onto the shardings of the ``state`` passed in (build it for the current mesh) and the
  data iterator is moved to the saved position; training continues from the saved step. A run
  resumed from step s reproduces the per-step losses and parameters of an uninterrupted run.
- **SIGTERM**: a handler (installed for the duration of the loop) only sets a flag; after the
  current step finishes, the loop saves a checkpoint, waits for it to be written and returns with
  ``preempted=True`` (the entry point then exits 0).
- **Checkpoints**: every ``save_every`` steps, after every evaluation (with its metrics, for the
  best-by-metric retention), at ``stop_at``/``total_steps`` and on SIGTERM; never twice per step.
- **Logging**: every ``log_every`` steps the step's metrics (fetched from device then, not every
  step) plus ``tokens_per_s`` (metric ``tokens`` summed since the last log, over wall time) and
  ``steps_per_s``; evaluation metrics under stage ``"{stage}_eval"``.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax

from r2rank_jax.train.checkpoint import Checkpointer, abstract_like
from r2rank_jax.train.logging import MetricsLogger


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    total_steps: int
    stop_at: int | None = None  # end this run at this step (checkpointed) even if total_steps is larger
    log_every: int = 10
    eval_every: int = 0         # 0: never
    save_every: int = 0         # 0: only at the end / on SIGTERM / after evals
    resume: bool = False
    throttle_s: float = 0.0     # sleep after each step (to demo/test preemption on tiny models)

    def __post_init__(self) -> None:
        if self.total_steps < 0 or self.log_every < 1 or self.eval_every < 0 or self.save_every < 0:
            raise ValueError(f"LoopConfig: need total_steps >= 0, log_every >= 1, eval_every/save_every >= 0; got {self}")


@dataclasses.dataclass
class LoopResult:
    state: Any
    step: int
    preempted: bool
    resumed_from: int | None
    last_metrics: dict[str, Any]


class SigtermFlag:
    """Context manager: while active, SIGTERM sets ``requested`` instead of killing the process."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def __enter__(self) -> "SigtermFlag":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


def maybe_resume(state: Any, checkpointer: Checkpointer | None, data_iter: Any, logger: MetricsLogger | None = None
                 ) -> tuple[Any, int | None]:
    """(restored state, its step) from the latest checkpoint, or (``state``, None) when there is none."""
    if checkpointer is None or checkpointer.latest_step() is None:
        if logger is not None:
            logger.write("resume: no checkpoint found; starting from scratch")
        return state, None
    step = checkpointer.latest_step()
    restored = checkpointer.restore(abstract_like(state), step=step, data_iter=data_iter)
    if logger is not None:
        logger.write(f"resume: restored step {step} from {checkpointer.step_dir(step)}")
    return restored, step


def run_loop(config: LoopConfig, state: Any, train_step: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
             data_iter: Iterator[Any], *, logger: MetricsLogger, checkpointer: Checkpointer | None = None,
             put: Callable[[Any], Any] = lambda b: b,
             eval_fn: Callable[[Any], Mapping[str, Any]] | None = None, stage: str = "train") -> LoopResult:
    """Runs ``train_step`` until ``stop_at``/``total_steps`` (see module docstring). ``state.step`` is the
    step counter; ``put`` moves a host batch to devices."""
    resumed_from = None
    if config.resume:
        state, resumed_from = maybe_resume(state, checkpointer, data_iter, logger)
    elif checkpointer is not None and checkpointer.latest_step() is not None:
        raise FileExistsError(f"{checkpointer.directory} already holds checkpoints (latest step "
                              f"{checkpointer.latest_step()}); resume from them or use a fresh directory")
    step = int(jax.device_get(state.step))
    end = config.total_steps if config.stop_at is None else min(config.stop_at, config.total_steps)
    logger.advance(step)
    saved_at = step if resumed_from is not None else None
    last: dict[str, Any] = {}

    def save(metrics: Mapping[str, Any] | None = None) -> None:
        nonlocal saved_at
        if checkpointer is not None and saved_at != step:
            checkpointer.save(step, state, data_iter, metrics=metrics)
            saved_at = step

    with SigtermFlag() as sigterm:
        window_tokens: list[Any] = []
        window_start, window_steps = time.perf_counter(), 0
        while step < end and not sigterm.requested:
            try:
                batch = next(data_iter)
            except StopIteration:
                logger.write(f"data exhausted after step {step}")
                break
            state, metrics = train_step(state, put(batch))
            step += 1
            window_steps += 1
            if "tokens" in metrics:
                window_tokens.append(metrics["tokens"])
            if step % config.log_every == 0 or step == end:
                last = {k: v for k, v in jax.device_get(dict(metrics)).items()}
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                if window_tokens:
                    last["tokens_per_s"] = float(sum(jax.device_get(window_tokens))) / elapsed
                last["steps_per_s"] = window_steps / elapsed
                logger.log(step, last)
                window_tokens, window_start, window_steps = [], time.perf_counter(), 0
            if eval_fn is not None and config.eval_every and step % config.eval_every == 0:
                eval_metrics = dict(eval_fn(state))
                logger.log(step, eval_metrics, stage=f"{stage}_eval")
                save(eval_metrics)
            if config.save_every and step % config.save_every == 0:
                save()
            logger.advance(step)
            if config.throttle_s:
                time.sleep(config.throttle_s)
        preempted = sigterm.requested and step < end
        save()
        if checkpointer is not None:
            checkpointer.wait()
    if preempted:
        logger.write(f"SIGTERM: saved step {step} to {checkpointer.step_dir(step) if checkpointer else '(no checkpointer)'}; exiting")
    return LoopResult(state=state, step=step, preempted=preempted, resumed_from=resumed_from, last_metrics=last)
