"""Low-rank adapters (LoRA) on the attention and MLP projections, and their merge into the base weights.

An adapted projection computes y = x @ W + (alpha / rank) * (x @ A) @ B, unmerged: W stays frozen
and only A `[*in, r]` and B `[r, *out]` train. A starts random normal with the variance of PEFT's
default init (1 / (3 * fan_in)), B starts at zero, so an untrained adapter leaves the model exactly
unchanged. Adapters are `LoRAParam`s (a subclass of `nnx.Param`), so `nnx.split(model, LoRAParam, ...)`
separates them from the base weights; the train state keeps optimizer state for them only.

Parameter paths: `layers/i/attn/{q,k,v,o}_lora/{a,b}`, `layers/i/mlp/{gate,up,down}_lora/{a,b}`.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from r2rank_jax.models.config import LoRAConfig, ModelConfig


class LoRAParam(nnx.Param):
    """A trainable adapter weight (everything else is frozen when the model has adapters)."""


class LoRA(nnx.Module):
    """The low-rank update of one projection whose kernel has shape `in_shape + out_shape`."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], cfg: ModelConfig, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(cfg.param_dtype)
        r = cfg.lora.rank
        std = 1.0 / math.sqrt(3 * math.prod(in_shape))
        self.a = LoRAParam(std * jax.random.normal(rngs.params(), in_shape + (r,), jnp.float32).astype(pdt))
        self.b = LoRAParam(jnp.zeros((r,) + out_shape, pdt))
        self.scale = cfg.lora.scale
        self.in_ndim = len(in_shape)
        self.compute_dtype = jnp.dtype(cfg.compute_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x `[..., *in]` → (alpha / rank) * (x @ A) @ B `[..., *out]` in the compute dtype."""
        cdt = self.compute_dtype
        xa = jnp.tensordot(x.astype(cdt), self.a[...].astype(cdt), axes=self.in_ndim)
        return jnp.tensordot(xa * jnp.asarray(self.scale, cdt), self.b[...].astype(cdt), axes=1)

    def delta(self) -> jax.Array:
        """The dense update (alpha / rank) * A @ B `in_shape + out_shape`, float32."""
        a, b = self.a[...].astype(jnp.float32), self.b[...].astype(jnp.float32)
        return self.scale * jnp.tensordot(a, b, axes=1, precision=jax.lax.Precision.HIGHEST)


def add_adapters(module: nnx.Module, cfg: ModelConfig, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
                 rngs: nnx.Rngs) -> None:
    """Gives `module` a `<target>_lora` adapter for each target of `shapes` (name → (in, out)) that
    cfg.lora enables; none at all when LoRA is off (parameter paths unchanged)."""
    for target, (in_shape, out_shape) in shapes.items():
        if cfg.lora.on(target):
            setattr(module, f"{target}_lora", LoRA(in_shape, out_shape, cfg, rngs=rngs))


def adapted(module: nnx.Module, target: str, x: jax.Array, y: jax.Array) -> jax.Array:
    """y (= x @ W of `target`) plus the target's adapter output when the module has one."""
    lora = getattr(module, f"{target}_lora", None)
    return y if lora is None else y + lora(x).astype(y.dtype)


def with_lora(model: Any, lora: LoRAConfig, seed: int = 0, mesh: Mesh | None = None) -> Any:
    """The decoder `model` (without adapters) with freshly initialized adapters: same base weights
    (shared, not copied), A random, B zero. Adapters go onto their partition-rule sharding on `mesh`."""
    from r2rank_jax.mesh import param_shardings
    from r2rank_jax.models.decoder import Decoder

    if model.config.lora.enabled:
        raise ValueError("the model already has LoRA adapters")
    if not lora.enabled:
        return model
    cfg = model.config.replace(lora=lora)
    build = lambda: Decoder(cfg, rngs=nnx.Rngs(seed))  # noqa: E731
    graphdef = nnx.graphdef(nnx.eval_shape(build))
    # Inside jit the base weights this builds are dead code: only the small adapters are computed.
    adapters = jax.jit(lambda: nnx.state(build(), LoRAParam))()
    if mesh is not None:
        adapters = jax.device_put(adapters, param_shardings(adapters, mesh))
    return nnx.merge(graphdef, nnx.state(model), adapters)


def merge_lora(model: Any) -> Any:
    """A decoder without adapters whose weights are W + (alpha / rank) * A @ B (summed in float32, stored
    in the param dtype): the same function as `model` up to rounding. Returns `model` itself without LoRA."""
    from r2rank_jax.models.decoder import Decoder

    cfg = model.config
    if not cfg.lora.enabled:
        return model
    plain = cfg.replace(lora=LoRAConfig())
    graphdef, target = nnx.split(nnx.eval_shape(lambda: Decoder(plain, rngs=nnx.Rngs(0))))
    weights = nnx.to_pure_dict(nnx.state(model, nnx.Not(LoRAParam)))   # a fresh dict: the model is untouched
    for i, layer in enumerate(model.layers):
        for block_name, targets in (("attn", ("q", "k", "v", "o")), ("mlp", ("gate", "up", "down"))):
            block = getattr(layer, block_name)
            for name in targets:
                lora = getattr(block, f"{name}_lora", None)
                if lora is not None:
                    kernels = weights["layers"][i][block_name]
                    w = kernels[f"{name}_proj"]
                    kernels[f"{name}_proj"] = (w.astype(jnp.float32) + lora.delta()).astype(w.dtype)
    nnx.replace_by_pure_dict(target, weights)
    return nnx.merge(graphdef, target)
