"""Optimizers: AdamW with linear warmup, an optional constant stretch and cosine decay, and global-norm
gradient clipping."""
from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    stable_steps: int = 0         # constant at the peak after warmup, then the decay (warmup-stable-decay); needs decay_steps
    decay_steps: int = 0          # 0: constant after warmup; else cosine decay to `final_lr_ratio` over this many steps
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0    # 0 disables clipping
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if min(self.warmup_steps, self.stable_steps, self.decay_steps) < 0:
            raise ValueError("warmup_steps, stable_steps and decay_steps must be >= 0")
        if self.stable_steps and not self.decay_steps:
            raise ValueError(f"stable_steps={self.stable_steps} needs decay_steps > 0 (without a decay the rate is "
                             "constant after warmup anyway)")


def learning_rate_schedule(cfg: OptimConfig) -> optax.Schedule:
    if cfg.stable_steps > 0:
        start = cfg.warmup_steps + cfg.stable_steps
        decay = optax.cosine_decay_schedule(cfg.learning_rate, cfg.decay_steps, alpha=cfg.final_lr_ratio)
        head = (optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps) if cfg.warmup_steps
                else optax.constant_schedule(cfg.learning_rate))
        return optax.join_schedules([head, decay], [start])
    if cfg.decay_steps > 0:
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if cfg.warmup_steps else cfg.learning_rate, peak_value=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps, decay_steps=cfg.warmup_steps + cfg.decay_steps,
            end_value=cfg.learning_rate * cfg.final_lr_ratio)
    if cfg.warmup_steps > 0:
        return optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.constant_schedule(cfg.learning_rate)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)
    return adamw
