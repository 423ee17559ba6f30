"""The LoRA adapter module and how a projection uses it (`adapted`); the decoder's layers import these.
Building a decoder with adapters and merging them: `models/lora.py`."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.models.config import ModelConfig


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
