"""What a method is: the stages it may implement, one signature each, and the scorers it offers the eval stage.

A method is a class registered with `@registry.register`; the launcher is its only caller:

    prepare (shared) → synthesize → sft → rl → eval (shared: every method's scorers on the same candidates)

- ``synthesize(ctx) -> dict``  its training corpus into WORKDIR/teacher
- ``sft(ctx) -> dict``         supervised stage, checkpoints in WORKDIR/sft
- ``rl(ctx) -> dict``          RL stage, checkpoints in WORKDIR/rl
- ``scorers() -> {name: Scorer}``  what the eval stage can score for this method (name → scores [U, K])
- ``plans(cfg) -> {name: library config}``  the library configs its stages build from `cfg` (the
  Spec-wiring test checks that every config field reaches one of them)

A stage the method lacks is ``None``: the launcher skips it with a note, the same way for every method.
Each stage returns its JSON summary (printed), with ``"preempted": True`` when SIGTERM stopped it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.run.context import RunContext, ScoreInput

TRAINING_STAGES = ("synthesize", "sft", "rl")

StageFn = Callable[[RunContext], dict]
ScoreFn = Callable[[ScoreInput], Any]        # -> (scores [U, K] float, extra result fields) | None


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Scores `[U, K]` (higher = ranked first) and extra result fields, or None when there is nothing to score
    (no checkpoint). `reads_run`: it reads this run's own checkpoints, so only a run of its method can score it;
    otherwise (zero-shot) any run can."""
    fn: ScoreFn
    reads_run: bool = True


class Method(Protocol):
    name: ClassVar[str]
    summary: ClassVar[str]
    synthesize: StageFn | None
    sft: StageFn | None
    rl: StageFn | None

    def scorers(self) -> Mapping[str, Scorer]: ...

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]: ...


class MethodBase:
    """Defaults for the `Method` protocol: no stage, no scorer, no plan. Subclasses define what they have."""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    synthesize: ClassVar[StageFn | None] = None
    sft: ClassVar[StageFn | None] = None
    rl: ClassVar[StageFn | None] = None

    def scorers(self) -> Mapping[str, Scorer]:
        return {}

    def plans(self, cfg: ExperimentConfig) -> dict[str, Any]:
        return {}


def stages_of(method: Method) -> tuple[str, ...]:
    """The training stages `method` implements, in pipeline order."""
    return tuple(s for s in TRAINING_STAGES if getattr(method, s, None) is not None)
