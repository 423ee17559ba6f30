"""Grouped-query attention over one or two key/value sources.

The second source is a shared, read-only context (the prefix every candidate prompt of a user shares):
its batch is `B // group`, and query row b reads context row b // group. Both sources enter one softmax,
so attending to [context; own keys] is exact, not an approximation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.models.config import ModelConfig
from r2rank_jax.mesh import constrain
from r2rank_jax.models.rope import apply_rope

_MASKED = -1e30


def visible(q_positions: jax.Array, kv_positions: jax.Array) -> jax.Array:
    """`[B, T, S]` bool: key s is visible to query t when 0 <= pos(s) <= pos(t)."""
    kv = kv_positions[:, None, :]
    return (kv >= 0) & (kv <= q_positions[:, :, None])


def _group_logits(q: jax.Array, k: jax.Array, group: int) -> jax.Array:
    """q `[B, T, Hkv, G, D]`, k `[B // group, Hkv, S, D]` → `[B, Hkv, G, T, S]` float32."""
    if group == 1:
        return jnp.einsum("btkgd,bksd->bkgts", q, k, preferred_element_type=jnp.float32)
    b, t, hkv, g, d = q.shape
    qg = q.reshape(b // group, group, t, hkv, g, d)
    logits = jnp.einsum("uctkgd,uksd->uckgts", qg, k, preferred_element_type=jnp.float32)
    return logits.reshape(b, hkv, g, t, k.shape[2])


def _group_values(p: jax.Array, v: jax.Array, group: int) -> jax.Array:
    """p `[B, Hkv, G, T, S]`, v `[B // group, Hkv, S, D]` → `[B, T, Hkv, G, D]` float32."""
    if p.dtype != jnp.float32 and jax.default_backend() == "cpu":
        # XLA CPU's DotThunk has no BF16 x BF16 = F32 kernel for this transpose-free layout. Exact
        # upcast of both inputs: same products, same float32 accumulation.
        p, v = p.astype(jnp.float32), v.astype(jnp.float32)
    if group == 1:
        return jnp.einsum("bkgts,bksd->btkgd", p, v, preferred_element_type=jnp.float32)
    b, hkv, g, t, s = p.shape
    pg = p.reshape(b // group, group, hkv, g, t, s)
    out = jnp.einsum("uckgts,uksd->uctkgd", pg, v, preferred_element_type=jnp.float32)
    return out.reshape(b, t, hkv, g, v.shape[-1])


def attend(q: jax.Array, q_positions: jax.Array, sources: list[tuple[jax.Array, jax.Array, jax.Array]]) -> jax.Array:
    """Softmax attention of q `[B, T, H, D]` over key/value sources.

    Each source is (k `[B', Hkv, S, D]`, v `[B', Hkv, S, D]`, positions `[B', S]`) with B' dividing B
    (head-major, the KV cache layout).
    Returns `[B, T, H, D]` in q's dtype. Softmax in float32; fully masked rows (padding queries) give a
    finite uniform average, never NaN.
    """
    b, t, h, d = q.shape
    hkv = sources[0][0].shape[1]
    qg = q.reshape(b, t, hkv, h // hkv, d) * jnp.asarray(d ** -0.5, q.dtype)
    all_logits, groups = [], []
    for k, v, kv_pos in sources:
        group = b // k.shape[0]
        logits = _group_logits(qg, k, group)
        if group == 1:
            mask = visible(q_positions, kv_pos)
        else:
            mask = visible(q_positions.reshape(b // group, group * t), kv_pos).reshape(b, t, -1)
        all_logits.append(jnp.where(mask[:, None, None], logits, _MASKED))
        groups.append(group)
    logits = jnp.concatenate(all_logits, axis=-1) if len(all_logits) > 1 else all_logits[0]
    probs = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    out = jnp.zeros((b, t, hkv, h // hkv, d), jnp.float32)
    start = 0
    for (k, v, _), group in zip(sources, groups):
        size = k.shape[2]
        out = out + _group_values(probs[..., start:start + size], v, group)
        start += size
    return out.reshape(b, t, h, d).astype(q.dtype)


class Attention(nnx.Module):
    """q/k/v projections (optional bias), rotary embeddings, GQA, o_proj (never a bias).

    Kernels are kept head-structured for clean tensor sharding: q `[D, H, hd]`, k/v `[D, Hkv, hd]`,
    o `[H, hd, D]`.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(cfg.param_dtype)
        init = nnx.initializers.normal(0.02)
        d, h, hkv, hd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nnx.Param(init(rngs.params(), (d, h, hd), pdt))
        self.k_proj = nnx.Param(init(rngs.params(), (d, hkv, hd), pdt))
        self.v_proj = nnx.Param(init(rngs.params(), (d, hkv, hd), pdt))
        self.o_proj = nnx.Param(init(rngs.params(), (h, hd, d), pdt))
        if cfg.attention_bias:
            self.q_bias = nnx.Param(jnp.zeros((h, hd), pdt))
            self.k_bias = nnx.Param(jnp.zeros((hkv, hd), pdt))
            self.v_bias = nnx.Param(jnp.zeros((hkv, hd), pdt))
        self.compute_dtype = jnp.dtype(cfg.compute_dtype)
        self.use_bias = cfg.attention_bias

    def project(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x `[B, T, D]` → rotated q `[B, T, H, hd]`, rotated k and v `[B, T, Hkv, hd]`."""
        cdt = self.compute_dtype
        x = x.astype(cdt)
        q = jnp.einsum("btd,dhk->bthk", x, self.q_proj[...].astype(cdt))
        k = jnp.einsum("btd,dhk->bthk", x, self.k_proj[...].astype(cdt))
        v = jnp.einsum("btd,dhk->bthk", x, self.v_proj[...].astype(cdt))
        if self.use_bias:
            q = q + self.q_bias[...].astype(cdt)
            k = k + self.k_bias[...].astype(cdt)
            v = v + self.v_bias[...].astype(cdt)
        q = constrain(q, ("batch", None, "heads", None))
        k = constrain(k, ("batch", None, "heads", None))
        v = constrain(v, ("batch", None, "heads", None))
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def output(self, attn: jax.Array) -> jax.Array:
        """attn `[B, T, H, hd]` → `[B, T, D]`."""
        cdt = self.compute_dtype
        return jnp.einsum("bthk,hkd->btd", attn.astype(cdt), self.o_proj[...].astype(cdt))
