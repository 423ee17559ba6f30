"""What every stage receives: the run's config, workdir, mesh and command-line flags."""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.run.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class RunContext:
    cfg: ExperimentConfig
    wd: Workdir
    mesh: Any = None             # jax.sharding.Mesh or None (one device, no sharding)
    resume: bool = False         # sft/rl: continue from the latest checkpoint
    overwrite: bool = False      # prepare: replace an existing benchmark


@dataclasses.dataclass(frozen=True)
class ScoreInput:
    """What a method's scorer reads in the eval stage: the run, its tokenizer, the split and its first users.

    Multi-host, each process scores its own block of the evaluated users (`records`) on a host-local
    mesh (`run.mesh`) and writes its per-user side outputs to its own `scores_dir`; `user_ids` are
    every evaluated user's (stages/eval_hosts.py).
    """
    run: RunContext
    tokenizer: Any
    source: Any                  # data.pipeline.SplitSource of the evaluated split
    records: Sequence[Any]       # data.benchmark.Record: the users this process scores, in split order
    out_dir: pathlib.Path | None = None          # per-user side outputs (default WORKDIR/eval/scores)
    all_user_ids: tuple[str, ...] | None = None  # every evaluated user (default: those of `records`)

    @property
    def scores_dir(self) -> pathlib.Path:
        return self.out_dir if self.out_dir is not None else self.run.wd.eval / "scores"

    @property
    def user_ids(self) -> list[str]:
        return list(self.all_user_ids) if self.all_user_ids is not None else [r.user_id for r in self.records]

    @property
    def cfg(self) -> ExperimentConfig:
        return self.run.cfg

    @property
    def wd(self) -> Workdir:
        return self.run.wd

    @property
    def mesh(self) -> Any:
        return self.run.mesh


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """What the eval stage scores (built by r2rank_jax.methods.eval_plan from the registered methods)."""
    order: tuple[str, ...]                                  # every requested scorer, in results order
    scorers: dict[str, Callable[[ScoreInput], Any]]         # those this run scores: ScoreInput → (scores [U, K], extra) | None
    unavailable: dict[str, str]                             # the others of `order`: why they are skipped
