"""Train state of the LLM π_θ and the scoring head f_φ, each with its own optimizer state.

With LoRA (`model.config.lora.rank > 0`) only the adapters of θ train: `TrainState.llm` still holds
all of θ (base weights + adapters, what checkpoints and rollouts use), but `llm_opt` covers the
adapters only, and the steps differentiate with respect to `Static.split_llm(llm)[0]` alone, so
the frozen base weights get neither gradients nor optimizer state.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r2rank_jax.distributed import put_same_value
from r2rank_jax.mesh import param_shardings
from r2rank_jax.models.lora_layers import LoRAParam


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # [] int32
    llm: Any                 # nnx.State of the decoder's parameters (θ)
    head: Any                # nnx.State of the scoring head's parameters (φ)
    llm_opt: Any             # optax state for the trained part of θ (all of θ, or its LoRA adapters)
    head_opt: Any            # optax state for φ
    key: jax.Array           # PRNG key for the Plackett-Luce rankings


@dataclasses.dataclass(frozen=True)
class Static:
    """What a train step needs besides the state: graph definitions and optimizers (hashable, static)."""

    llm_def: Any
    head_def: Any
    llm_tx: optax.GradientTransformation
    head_tx: optax.GradientTransformation
    llm_trainable: Any = None   # nnx filter of the trained part of θ (LoRAParam); None: all of θ

    def models(self, llm, head):
        """(decoder, head) modules from parameter states (inside a traced function)."""
        return nnx.merge(self.llm_def, llm), nnx.merge(self.head_def, head)

    def split_llm(self, llm) -> tuple[Any, Any]:
        """(trained, frozen) parts of θ's state; (llm, None) when all of θ trains."""
        if self.llm_trainable is None:
            return llm, None
        return nnx.split_state(llm, self.llm_trainable, ...)

    def merge_llm(self, trained, frozen) -> Any:
        """Inverse of `split_llm` (same tree structure as the original state)."""
        return trained if frozen is None else nnx.merge_state(trained, frozen)


def create_train_state(model, head, llm_tx: optax.GradientTransformation, head_tx: optax.GradientTransformation,
                       key: jax.Array, mesh: Mesh | None = None) -> tuple[Static, TrainState]:
    """Splits the modules, shards their parameters over `mesh` (partition rules), and initializes both
    optimizers (for a model with LoRA adapters, `llm_tx` sees the adapters only)."""
    llm_def, llm = nnx.split(model)
    head_def, head_params = nnx.split(head)
    if mesh is not None:   # (multi-host: every process holds the same values; `put_same_value`)
        llm = put_same_value(llm, param_shardings(llm, mesh))
        head_params = put_same_value(head_params, param_shardings(head_params, mesh, prefix="head"))
        key = put_same_value(key, NamedSharding(mesh, P()))
    static = Static(llm_def, head_def, llm_tx, head_tx, LoRAParam if model.config.lora.enabled else None)
    init = jax.jit(lambda llm, head: (llm_tx.init(static.split_llm(llm)[0]), head_tx.init(head)))
    llm_opt, head_opt = init(llm, head_params)
    step = jnp.zeros((), jnp.int32)
    if mesh is not None:
        step = put_same_value(step, NamedSharding(mesh, P()))
        # Optimizer leaves built from no parameter (e.g. Adam's step count) land on one device; replicate
        # them over the mesh so that the whole state lives on it.
        on_mesh = lambda x: x if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh \
            else put_same_value(x, NamedSharding(mesh, P()))  # noqa: E731
        llm_opt, head_opt = jax.tree.map(on_mesh, (llm_opt, head_opt))
    return static, TrainState(step=step, llm=llm, head=head_params, llm_opt=llm_opt, head_opt=head_opt, key=key)


def guarded_llm_update(static: Static, state: TrainState, trained: Any, frozen: Any, grads: Any,
                       loss: jax.Array) -> tuple[TrainState, jax.Array, jax.Array]:
    """One optimizer update of θ's trained part (`static.split_llm`) and step + 1; the state comes back
    untouched when the loss or the gradient norm is not finite. Returns (state, grad norm, ok)."""
    gnorm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, llm_opt = static.llm_tx.update(grads, state.llm_opt, trained)
    new = state.replace(step=state.step + 1, llm=static.merge_llm(optax.apply_updates(trained, updates), frozen),
                        llm_opt=llm_opt)
    return jax.lax.cond(ok, lambda: new, lambda: state), gnorm, ok


def state_shardings(state: TrainState) -> Any:
    """The current sharding of every leaf (to pin a jitted step's output to its input layout)."""
    return jax.tree.map(lambda x: x.sharding, state)


def jit_step(step, state_sharding=None, mesh=None):
    """`jax.jit(step)` with the state (argument 0) donated and, when given, pinned to its sharding; on a
    mesh, calls run under `jax.set_mesh` so activation sharding constraints apply. `.jitted` is the
    jitted function (for compile counts)."""
    jitted = jax.jit(step, donate_argnums=0, out_shardings=None if state_sharding is None else (state_sharding, None))
    if mesh is None:
        return jitted

    def on_mesh(state, batch):
        with jax.set_mesh(mesh):
            return jitted(state, batch)
    on_mesh.jitted = jitted
    return on_mesh
