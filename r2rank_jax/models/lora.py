"""Low-rank adapters (LoRA) on the attention and MLP projections, and their merge into the base weights.

An adapted projection computes y = x @ W + (alpha / rank) * (x @ A) @ B, unmerged: W stays frozen
and only A `[*in, r]` and B `[r, *out]` train. A starts random normal with the variance of PEFT's
default init (1 / (3 * fan_in)), B starts at zero, so an untrained adapter leaves the model exactly
unchanged. Adapters are `LoRAParam`s (a subclass of `nnx.Param`), so `nnx.split(model, LoRAParam, ...)`
separates them from the base weights; the train state keeps optimizer state for them only.

Parameter paths: `layers/i/attn/{q,k,v,o}_lora/{a,b}`, `layers/i/mlp/{gate,up,down}_lora/{a,b}`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from r2rank_jax.mesh import param_shardings
from r2rank_jax.models.config import LoRAConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.lora_layers import LoRAParam


def with_lora(model: Any, lora: LoRAConfig, seed: int = 0, mesh: Mesh | None = None) -> Any:
    """The decoder `model` (without adapters) with freshly initialized adapters: same base weights
    (shared, not copied), A random, B zero. Adapters go onto their partition-rule sharding on `mesh`."""
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
