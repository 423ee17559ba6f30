"""A minimal jitted training loop for the deep baselines (Adam via `train.optim.make_optimizer`).

The loss is `loss_fn(model, batch, key) -> scalar`; the model's `nnx.Param`s are the only state.
Batches come from `make_batch(example_indices [B], rng) -> dict of numpy arrays` with fixed shapes,
so the step compiles once. Each epoch visits a seeded permutation of the examples (optionally only
the first `max_examples_per_epoch` of it) and drops the incomplete last batch.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np
import optax
from flax import nnx

from r2rank_jax.train.optim import OptimConfig, make_optimizer

LossFn = Callable[[nnx.Module, dict[str, jax.Array], jax.Array], jax.Array]
BatchFn = Callable[[np.ndarray, np.random.Generator], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_examples_per_epoch: int = 0  # 0 = all
    max_steps: int = 0  # 0 = no limit (tests use a few steps)
    seed: int = 0


def fit(model: nnx.Module, loss_fn: LossFn, make_batch: BatchFn, num_examples: int, cfg: FitConfig,
        log: Callable[[str], None] | None = print) -> list[float]:
    """Trains `model` in place; returns the loss of every step."""
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(OptimConfig(learning_rate=cfg.learning_rate, max_grad_norm=0.0))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_of(p):
            return loss_fn(nnx.merge(graphdef, p), batch, key)

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(cfg.seed)
    key = jax.random.key(cfg.seed)
    batch_size = min(cfg.batch_size, num_examples)
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        order = rng.permutation(num_examples)
        if cfg.max_examples_per_epoch:
            order = order[: cfg.max_examples_per_epoch]
        epoch_losses = []
        for lo in range(0, len(order) - batch_size + 1, batch_size):
            batch = make_batch(order[lo:lo + batch_size], rng)
            params, opt_state, loss = step(params, opt_state, batch, jax.random.fold_in(key, len(losses) + len(epoch_losses)))
            epoch_losses.append(loss)
            if cfg.max_steps and len(losses) + len(epoch_losses) >= cfg.max_steps:
                break
        losses += [float(x) for x in jax.device_get(epoch_losses)]
        if log is not None and epoch_losses:
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses[-len(epoch_losses):]):.4f} "
                f"({len(epoch_losses)} steps, {time.perf_counter() - start:.1f} s)")
        if cfg.max_steps and len(losses) >= cfg.max_steps:
            break
    nnx.update(model, params)
    return losses


def batched_apply(fn: Callable[..., jax.Array], *arrays: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Applies a jitted `fn` to row chunks of `arrays` (the last chunk padded to a full chunk, so one
    compilation) and concatenates the results."""
    n = arrays[0].shape[0]
    out = []
    for lo in range(0, n, batch_size):
        chunk = [a[lo:lo + batch_size] for a in arrays]
        rows = chunk[0].shape[0]
        if rows < batch_size and n > batch_size:
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - rows, axis=0)]) for c in chunk]
        out.append(np.asarray(fn(*chunk))[:rows])
    return np.concatenate(out)
