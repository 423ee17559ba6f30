"""Pieces every training/eval stage builds the same way from an ExperimentConfig and a Workdir."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from r2rank_jax.config import ExperimentConfig, OptimSpec
from r2rank_jax.data.pipeline import PipelineConfig, SplitSource, fit_to_buckets, make_iterator
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import DEFAULT_BUCKETS, Sampler, SamplerConfig
from r2rank_jax.sampling.stops import StopStrings
from r2rank_jax.run.build import build_model, load_tokenizer
from r2rank_jax.run.workdir import Workdir
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like, train_metadata
from r2rank_jax.train.logging import MetricsLogger
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.state import create_train_state

STOP_STRING = "</answer>"


def tokenizer(cfg: ExperimentConfig, wd: Workdir, stage: str) -> Any:
    """The stage's tokenizer; first checks that `prepare` has run (a clear error naming the stage otherwise)."""
    wd.require(wd.benchmark, stage, "prepare")
    return load_tokenizer(cfg, wd, stage)


def optim_config(spec: OptimSpec) -> OptimConfig:
    """The one mapping from a config's OptimSpec to the library's OptimConfig."""
    return OptimConfig(**dataclasses.asdict(spec))


def optimizer(spec: OptimSpec):
    return make_optimizer(optim_config(spec))


def train_state(model, head, llm_optim: OptimSpec | None, head_optim: OptimSpec, seed: int, mesh=None):
    """llm_optim=None: a frozen LLM, whose optimizer holds no state (no moments for θ)."""
    import optax

    llm_tx = optax.set_to_zero() if llm_optim is None else optimizer(llm_optim)
    return create_train_state(model, head, llm_tx, optimizer(head_optim), jax.random.PRNGKey(seed), mesh)


def sft_state_and_step(model, head, optim: OptimSpec, microbatches: int, seed: int, mesh=None, shared_prefix: int = 0):
    """(Static, TrainState, jitted SFT step) for supervised training of θ with `optim` (its warmup/decay
    schedule); the head's optimizer is plain (SFT does not train the head). shared_prefix: `SFTConfig`'s."""
    from r2rank_jax.train.optim import learning_rate_schedule
    from r2rank_jax.train.sft import SFTConfig, make_sft_step
    from r2rank_jax.train.state import state_shardings

    opt = optim_config(optim)
    static, state = create_train_state(model, head, make_optimizer(opt), make_optimizer(OptimConfig(opt.learning_rate)),
                                       jax.random.PRNGKey(seed), mesh)
    step_fn = make_sft_step(static, SFTConfig(microbatches, shared_prefix=shared_prefix), learning_rate_schedule(opt),
                            state_shardings(state) if mesh else None, mesh)
    return static, state, step_fn


def checkpointer(directory, model, head, best_metric: str | None, best_mode: str = "max") -> Checkpointer:
    return Checkpointer(CheckpointConfig(directory=str(directory / "checkpoints"), best_metric=best_metric,
                                         best_mode=best_mode), metadata=train_metadata(model.config, head))


def logger(wd: Workdir, stage: str, total_steps: int) -> MetricsLogger:
    return MetricsLogger(wd.root, stage, total_steps=total_steps)


def evaluated_step(ckpt: Checkpointer) -> int | None:
    """The step a run's evaluation reads: the best checkpoint, else the latest; None when there is none."""
    step = ckpt.best_step()
    return ckpt.latest_step() if step is None else step


def checkpoint_digest(run_dir) -> str | None:
    """"STEP:sha256" of the parameters `restore_params` would load from RUN_DIR/checkpoints (bitwise-equal
    parameters, equal digests: `Checkpointer.params_digest`); None when it holds no checkpoint."""
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    with Checkpointer.reopen(ckpt_dir) as ckpt:
        step = evaluated_step(ckpt)
        return None if step is None else f"{step}:{ckpt.params_digest(step)}"


def restore_params(model, head, run_dir) -> int | None:
    """Loads the best (else latest) checkpoint of RUN_DIR/checkpoints into (model, head); its step, or None."""
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    with Checkpointer.reopen(ckpt_dir) as ckpt:
        step = evaluated_step(ckpt)
        if step is None:
            return None
        target = {"llm": nnx.split(model)[1], "head": nnx.split(head)[1]}
        params = ckpt.restore_params(abstract_like(target), step=step)
    nnx.update(model, params["llm"])
    nnx.update(head, params["head"])
    return step


def model_from_checkpoint(cfg: ExperimentConfig, tok: Any, mesh=None, run_dir=None):
    """(decoder, head) with RUN_DIR's best (else latest) checkpoint, or the base model when run_dir is None;
    None when RUN_DIR holds no checkpoint."""
    model, head = build_model(cfg, tok, mesh)
    if run_dir is not None and restore_params(model, head, run_dir) is None:
        return None
    return model, head


def model_from_sft_or_base(cfg: ExperimentConfig, wd: Workdir, tok: Any, mesh=None):
    """(decoder, head): the SFT checkpoint's parameters when WORKDIR/sft has one, else the base model.
    With `sft.steps=0` (the RL-only ablation) always the base model, whatever WORKDIR/sft holds."""
    model, head = build_model(cfg, tok, mesh)
    if cfg.sft.steps > 0:
        restore_params(model, head, wd.sft)
    return model, head


def eos_ids(model, tok: Any) -> tuple[int, ...]:
    """The tokenizer's EOS and the model config's EOS ids (generation stops at any of them)."""
    return tuple(i for i in {tok.eos_token_id, *model.config.eos_token_ids} if i is not None)


def run_buckets(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The sampler buckets of the run's shared-prefix prompts: every prefix and suffix bucket."""
    return tuple(sorted(set(cfg.data.prefix_buckets) | set(cfg.data.suffix_buckets)))


def budget_buckets(budget: int) -> tuple[int, ...]:
    """Whole-prompt buckets up to a token budget: the sampler's default buckets below it, then the budget."""
    return tuple(b for b in DEFAULT_BUCKETS if b < budget) + (budget,)


def sampler(model, tok: Any, cfg: ExperimentConfig | None, max_new_tokens: int,
            buckets: tuple[int, ...] | None = None, stop_at_answer: bool = True) -> Sampler:
    """The one way a stage builds its sampler: stops at EOS (and at ``</answer>`` unless `stop_at_answer`
    is False); prompts padded to `buckets` (default: the run's prefix and suffix buckets)."""
    buckets = run_buckets(cfg) if buckets is None else buckets
    stops = StopStrings.from_tokenizer([STOP_STRING], tok, model.config.vocab_size) if stop_at_answer else None
    return Sampler(model, SamplerConfig(max_new_tokens=max_new_tokens, eos_ids=eos_ids(model, tok),
                                        pad_id=tok.pad_token_id or 0, buckets=buckets), stops=stops)


def sampling_params(batch: int, temperature: float) -> SamplingParams:
    return SamplingParams.make(batch, temperature=temperature)


def prompts_and_pipeline(cfg: ExperimentConfig, tok: Any, wd: Workdir, batch_users: int,
                         variant: str | None = None) -> tuple[PromptBuilder, PipelineConfig]:
    """Prompt builder (`variant`, default `data.prompt_variant`) and pipeline config of the run."""
    prompt_cfg, pipeline = prompt_configs(cfg, batch_users, variant)
    return PromptBuilder(tok, source(wd, "train").items, prompt_cfg), pipeline


def prompt_configs(cfg: ExperimentConfig, batch_users: int, variant: str | None = None
                   ) -> tuple[PromptConfig, PipelineConfig]:
    """The run's prompt config (its budget fitted to the buckets) and pipeline config, from `cfg` alone."""
    d = cfg.data
    pipeline = PipelineConfig(batch_users=batch_users, prefix_buckets=d.prefix_buckets, suffix_buckets=d.suffix_buckets,
                              seed=cfg.seed)
    return fit_to_buckets(prompt_config(cfg, variant or d.prompt_variant), pipeline), pipeline


def prompt_config(cfg: ExperimentConfig, variant: str = "cot", max_prompt_tokens: int | None | str = "run") -> PromptConfig:
    """How every method renders this run's items and users: `variant`, the run's item fields and (``"run"``)
    its prompt budget."""
    budget = cfg.data.max_prompt_tokens if max_prompt_tokens == "run" else max_prompt_tokens
    return PromptConfig(variant=variant, max_prompt_tokens=budget, item_fields=tuple(cfg.data.item_fields))


def source(wd: Workdir, split: str) -> SplitSource:
    return SplitSource(wd.require(wd.benchmark, split, "prepare"), split)


def iterator(wd: Workdir, split: str, builder: PromptBuilder, pipeline: PipelineConfig):
    return make_iterator(source(wd, split), builder, pipeline)
