"""Key/value cache for incremental decoding, and read-only shared contexts.

Keys are stored "keys last", `[B, kv_heads, head_dim, S]`, so that a decode step's query-key product
is a plain `[G, hd] x [hd, S]` matmul per (row, head) with no transposed operand (values stay
`[B, kv_heads, S, head_dim]`): on XLA CPU this made a SmolLM2 decode step ~12% faster (docs/rollout.md).
A read-only context may keep its keys slot-major (`keys_last=False`), as the training path does.

Every cache slot stores the absolute position of the token it holds (-1 for an empty slot). Attention
masks are derived from positions alone (a key is visible when 0 <= key position <= query position), which
handles left padding, decoding and shared-prefix branches with one rule.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from r2rank_jax.models.config import ModelConfig


@flax.struct.dataclass
class KVCache:
    """Per-layer keys `[B, kv_heads, head_dim, S]` (keys_last) or `[B, kv_heads, S, head_dim]`, values
    `[B, kv_heads, S, head_dim]`, slot positions `[B, S]` and the next free slot.

    Head-major, so the per-row attention products are plain batched matmuls over (B, kv_heads): with a
    `[B, S, kv_heads, head_dim]` layout XLA CPU transposes the whole cache in every decode step (8x
    slower attention for SmolLM2 at B=20, see docs/rollout.md).
    `end` is a scalar int32: all rows write at the same slot (prompts are padded to a common length).
    Own caches (`init`) are always keys_last.
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    positions: jax.Array
    end: jax.Array
    keys_last: bool = flax.struct.field(pytree_node=False, default=True)

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, size: int, dtype=None) -> "KVCache":
        dtype = dtype or jnp.dtype(cfg.compute_dtype)
        shape = (batch, cfg.num_kv_heads, size, cfg.head_dim)
        key_shape = (batch, cfg.num_kv_heads, cfg.head_dim, size)
        zeros = tuple(jnp.zeros(key_shape, dtype) for _ in range(cfg.num_layers))
        zeros_v = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))
        return cls(k=zeros, v=zeros_v, positions=jnp.full((batch, size), -1, jnp.int32), end=jnp.zeros((), jnp.int32))

    @property
    def batch(self) -> int:
        return self.positions.shape[0]

    @property
    def size(self) -> int:
        return self.positions.shape[1]

    def check_room(self, num_new: int) -> None:
        """Raises when `num_new` tokens do not fit (only checkable when `end` is concrete)."""
        try:
            end = int(self.end)
        except (jax.errors.ConcretizationTypeError, TypeError):
            return
        if end + num_new > self.size:
            raise ValueError(f"KV cache overflow: {num_new} new tokens at slot {end} exceed the cache size {self.size}")

    def write_positions(self, positions: jax.Array) -> "KVCache":
        """Records positions `[B, T]` of the tokens about to be written at slot `end`."""
        new = jax.lax.dynamic_update_slice(self.positions, positions.astype(jnp.int32), (0, self.end))
        return self.replace(positions=new)

    def write_layer(self, layer: int, k: jax.Array, v: jax.Array) -> "KVCache":
        """Writes one layer's new keys/values `[B, T, kv_heads, head_dim]` at slot `end` (positions already written)."""
        if not self.keys_last:
            raise ValueError("a slot-major (keys_last=False) cache is a read-only context")
        k, v = keys_last(k), heads_first(v)
        ks = list(self.k)
        vs = list(self.v)
        ks[layer] = jax.lax.dynamic_update_slice(ks[layer], k.astype(ks[layer].dtype), (0, 0, 0, self.end))
        vs[layer] = jax.lax.dynamic_update_slice(vs[layer], v.astype(vs[layer].dtype), (0, 0, self.end, 0))
        return self.replace(k=tuple(ks), v=tuple(vs))

    def advance(self, num_new: int | jax.Array) -> "KVCache":
        return self.replace(end=self.end + num_new)


def heads_first(x: jax.Array) -> jax.Array:
    """`[B, T, kv_heads, head_dim]` → the cache layout `[B, kv_heads, T, head_dim]`."""
    return jnp.swapaxes(x, 1, 2)


def keys_last(x: jax.Array) -> jax.Array:
    """`[B, T, kv_heads, head_dim]` → the cache's key layout `[B, kv_heads, head_dim, T]`."""
    return jnp.transpose(x, (0, 2, 3, 1))
