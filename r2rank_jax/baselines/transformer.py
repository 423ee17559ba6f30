"""A small pre-LayerNorm transformer encoder over item-id sequences (Flax NNX), shared by SASRec
(causal) and BERT4Rec (bidirectional).

Modules hold parameters only. Dropout is applied functionally from an explicit `key` (None = eval),
so a training step is a pure function of (params, batch, key) that `jax.jit` compiles once.
Sequences are left-padded with item index 0 (PAD); positions are absolute slots 0..L-1, so the most
recent item always sits in slot L-1.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

PAD = 0
_NEG = -1e9


class KeyStream:
    """Hands out a fresh dropout key per call (`None` throughout in eval mode)."""

    def __init__(self, key: jax.Array | None):
        self.key = key
        self.count = 0

    def next(self) -> jax.Array | None:
        if self.key is None:
            return None
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate == 0.0:
        return x
    # uniform < p rather than jax.random.bernoulli: the same mask law, ~20x faster on CPU here.
    keep = jax.random.uniform(key, x.shape) < 1.0 - rate
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class SelfAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.out = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, rate: float, keys: KeyStream) -> jax.Array:
        """x `[B, L, D]`, mask `[B, 1, L, L]` bool (query, key) -> `[B, L, D]`."""
        b, length, dim = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, length, 3, self.heads, dim // self.heads), 3, axis=2)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q[:, :, 0], k[:, :, 0]) / math.sqrt(dim // self.heads)
        weights = jax.nn.softmax(jnp.where(mask, logits, _NEG), axis=-1)
        weights = dropout(weights, rate, keys.next())
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v[:, :, 0]).reshape(b, length, dim))


class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, activation: str, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = SelfAttention(dim, heads, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.ff1 = nnx.Linear(dim, ffn_dim, rngs=rngs)
        self.ff2 = nnx.Linear(ffn_dim, dim, rngs=rngs)
        self.activation = {"relu": jax.nn.relu, "gelu": jax.nn.gelu}[activation]

    def __call__(self, x: jax.Array, mask: jax.Array, rate: float, keys: KeyStream) -> jax.Array:
        x = x + dropout(self.attn(self.norm1(x), mask, rate, keys), rate, keys.next())
        h = dropout(self.activation(self.ff1(self.norm2(x))), rate, keys.next())
        return x + dropout(self.ff2(h), rate, keys.next())


class SequenceEncoder(nnx.Module):
    """Item + learned positional embeddings, `layers` transformer blocks, final LayerNorm."""

    def __init__(self, num_tokens: int, max_len: int, dim: int = 64, heads: int = 1, layers: int = 2,
                 ffn_dim: int | None = None, dropout_rate: float = 0.2, activation: str = "relu",
                 *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.item_embed = nnx.Embed(num_tokens, dim, embedding_init=init, rngs=rngs)
        self.pos_embed = nnx.Embed(max_len, dim, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([Block(dim, heads, ffn_dim or dim, activation, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.rate = dropout_rate
        self.max_len = max_len

    def __call__(self, ids: jax.Array, causal: bool, key: jax.Array | None = None) -> jax.Array:
        """ids `[B, L]` (L <= max_len, left-padded) -> hidden states `[B, L, D]`."""
        length = ids.shape[1]
        keys = KeyStream(key)
        valid = ids != PAD
        x = self.item_embed(ids) + self.pos_embed(jnp.arange(self.max_len - length, self.max_len))[None]
        x = dropout(x, self.rate, keys.next()) * valid[..., None]
        mask = valid[:, None, None, :]
        if causal:
            mask = mask & jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]
        mask = mask | jnp.eye(length, dtype=bool)[None, None]  # padding queries attend to themselves, never to nothing
        for block in self.blocks:
            x = block(x, mask, self.rate, keys) * valid[..., None]
        return self.norm(x)
