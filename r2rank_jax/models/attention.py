"""Grouped-query attention over one or two key/value sources.

The second source is a shared, read-only context (the prefix every candidate prompt of a user shares):
its batch is `B // group`, and query row b reads context row b // group. Both sources enter one softmax,
so attending to [context; own keys] is exact, not an approximation.
"""
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.lora_layers import adapted, add_adapters
from r2rank_jax.mesh import constrain
from r2rank_jax.models.rope import apply_rope

_MASKED = -1e30


@flax.struct.dataclass
class Source:
    """One key/value source: keys `[B', Hkv, S, D]` (or `[B', Hkv, D, S]` when keys_last), values
    `[B', Hkv, S, D]`, slot positions `[B', S]` (-1 = empty). keys_last is static (not traced).
    segments `[B', S]` (optional): a query with segment ids sees only the keys of its own segment
    (several sequences packed into one row); a source without segments is visible to every segment.
    band (static, with segments): the source holds the queries' own tokens (S = T) and no segment is
    longer than `band` tokens, which divides T; a query then computes logits only against the keys
    of its own block of `band` tokens and the block before (`[T, 2 * band]` instead of `[T, T]`), which
    hold every key of its segment.
    causal_blocks (static): the source holds the queries' own tokens (S = T) in causal slot order (no query
    sees a key in a later slot); the queries then run as this many blocks of rows, block i against the
    keys of slots up to its own end only (about (n + 1) / 2n of the `[T, T]` logits). Valid rows get the
    same result; a padding query (it sees no key) averages over its block's keys instead of all T."""

    k: jax.Array
    v: jax.Array
    positions: jax.Array
    keys_last: bool = flax.struct.field(pytree_node=False, default=False)
    segments: jax.Array | None = None
    band: int | None = flax.struct.field(pytree_node=False, default=None)
    causal_blocks: int | None = flax.struct.field(pytree_node=False, default=None)


CAUSAL_BLOCK_ROWS = 128


def causal_block_count(t: int, rows: int = CAUSAL_BLOCK_ROWS) -> int:
    """Query blocks for `Source.causal_blocks` over T own tokens: blocks of about `rows` rows. At the demo's
    SFT width (T = 464) an SFT step with 4 blocks took 0.76-0.79x the time of dense attention, with 8 blocks
    0.79x (`python -m r2rank_jax.bench.sft_step`, docs/demo.md)."""
    return max(1, round(t / rows))


def visible(q_positions: jax.Array, kv_positions: jax.Array) -> jax.Array:
    """`[B, T, S]` bool: key s is visible to query t when 0 <= pos(s) <= pos(t)."""
    kv = kv_positions[:, None, :]
    return (kv >= 0) & (kv <= q_positions[:, :, None])


def _source_logits(qh: jax.Array, q_positions: jax.Array, src: Source, q_segments: jax.Array | None) -> jax.Array:
    """Masked logits of queries qh `[B, Hkv, G, T, D]` against one source's keys.

    Returns `[B', Hkv, C, G, T, S]` float32 with C = B // B' (query row b = u * C + c reads source row u).
    The C branches' queries are stacked into the rows of one `[C*G*T, D] x [D, S]` product per (u, head):
    plain batched matmuls that need no copy of the keys (a shared prefix is never broadcast C times).
    """
    b, hkv, g, t, d = qh.shape
    if src.band:
        return _band_logits(qh, q_positions, src, q_segments)
    k = src.k
    u, s = k.shape[0], k.shape[3 if src.keys_last else 2]
    c = b // u
    qs = qh.reshape(u, c, hkv, g, t, d).transpose(0, 2, 1, 3, 4, 5).reshape(u, hkv, c * g * t, d)
    spec = "ukqd,ukds->ukqs" if src.keys_last else "ukqd,uksd->ukqs"
    logits = jnp.einsum(spec, qs, k, preferred_element_type=jnp.float32)
    mask = visible(q_positions.reshape(u, c * t), src.positions)
    if q_segments is not None and src.segments is not None:
        mask = mask & (src.segments[:, None, :] == q_segments.reshape(u, c * t)[:, :, None])
    mask = mask.reshape(u, 1, c, 1, t, s)
    return jnp.where(mask, logits.reshape(u, hkv, c, g, t, s), _MASKED)


def _windows(x: jax.Array, band: int, axis: int) -> jax.Array:
    """Blocks of `band` along `axis` (length T = n * band), each with the block before it (zeros before the
    first): `[..., T, ...]` → `[..., n, 2 * band, ...]`."""
    x = jnp.moveaxis(x, axis, -1)
    blocks = x.reshape(*x.shape[:-1], -1, band)
    fill = jnp.full_like(blocks[..., :1, :], -1 if jnp.issubdtype(x.dtype, jnp.integer) else 0)
    before = jnp.concatenate([fill, blocks[..., :-1, :]], axis=-2)
    return jnp.moveaxis(jnp.concatenate([before, blocks], axis=-1), (-2, -1), (axis, axis + 1))


def _band_logits(qh: jax.Array, q_positions: jax.Array, src: Source, q_segments: jax.Array) -> jax.Array:
    """`_source_logits` of a banded source (see Source.band): `[B, Hkv, 1, G, T, 2 * band]`."""
    b, hkv, g, t, d = qh.shape
    band = src.band
    if src.keys_last or src.k.shape[:3] != (b, hkv, t) or t % band or q_segments is None or src.segments is None:
        raise ValueError(f"a banded source holds the queries' own {t} tokens (a multiple of band={band}), "
                         f"heads-first keys {src.k.shape} and segment ids")
    n = t // band
    keys = _windows(src.k, band, 2)                                                # [B, Hkv, n, 2 * band, D]
    logits = jnp.einsum("bkgncd,bknsd->bkgncs", qh.reshape(b, hkv, g, n, band, d), keys,
                        preferred_element_type=jnp.float32)
    kv_pos, kv_seg = _windows(src.positions, band, 1), _windows(src.segments, band, 1)   # [B, n, 2 * band]
    q_pos, q_seg = q_positions.reshape(b, n, band, 1), q_segments.reshape(b, n, band, 1)
    mask = (kv_pos[:, :, None] >= 0) & (kv_pos[:, :, None] <= q_pos) & (kv_seg[:, :, None] == q_seg)
    logits = jnp.where(mask[:, None, None], logits, _MASKED)                     # [B, Hkv, G, n, band, 2 * band]
    return logits.reshape(b, hkv, 1, g, t, 2 * band)


def _band_values(w: jax.Array, src: Source) -> jax.Array:
    """`_source_values` of a banded source: w `[B, Hkv, 1, G, T, 2 * band]` → `[B, Hkv, G, T, D]` float32."""
    b, hkv, _, g, t, _ = w.shape
    band = src.band
    values = _windows(src.v, band, 2)                                              # [B, Hkv, n, 2 * band, D]
    out = jnp.einsum("bkgncs,bknsd->bkgncd", w.reshape(b, hkv, g, t // band, band, 2 * band), values,
                     preferred_element_type=jnp.float32)
    return out.reshape(b, hkv, g, t, -1)


def _to_rows(x: jax.Array) -> jax.Array:
    """`[B', Hkv, C, G, T, X]` (a source's layout) → `[B' * C, Hkv, G, T, X]` (one entry per query row)."""
    u, hkv, c, g, t, n = x.shape
    return x.transpose(0, 2, 1, 3, 4, 5).reshape(u * c, hkv, g, t, n)


def _from_rows(x: jax.Array, u: int) -> jax.Array:
    """Inverse of `_to_rows` for a source of batch u."""
    b, hkv, g, t, n = x.shape
    return x.reshape(u, b // u, hkv, g, t, n).transpose(0, 2, 1, 3, 4, 5)


def _source_values(w: jax.Array, src: Source) -> jax.Array:
    """Weights w `[B', Hkv, C, G, T, S]` times the values `[B', Hkv, S, D]` → `[B' * C, Hkv, G, T, D]` float32."""
    v = src.v
    u, hkv, c, g, t, s = w.shape
    if w.dtype != jnp.float32 and jax.default_backend() == "cpu":
        # XLA CPU's DotThunk has no BF16 x BF16 = F32 kernel for this layout. Exact upcast of both
        # inputs: same products, same float32 accumulation.
        w, v = w.astype(jnp.float32), v.astype(jnp.float32)
        src = src.replace(v=v)
    if src.band:
        return _band_values(w, src)
    out = jnp.einsum("ukqs,uksd->ukqd", w.reshape(u, hkv, c * g * t, s), v, preferred_element_type=jnp.float32)
    return _to_rows(out.reshape(u, hkv, c, g, t, v.shape[-1]))


def attend(q: jax.Array, q_positions: jax.Array, sources: list[Source], q_segments: jax.Array | None = None
           ) -> jax.Array:
    """Softmax attention of q `[B, T, H, D]` (segment ids q_segments `[B, T]`, optional) over key/value sources.

    Each source's batch B' divides B (query row b reads source row b // (B // B')). All sources enter one softmax through a shared maximum and
    normalizer (no concatenated copy of the logits). Returns `[B, T, H, D]` in q's dtype. Softmax in
    float32; fully masked rows (padding queries) give a finite uniform average, never NaN.
    """
    blocked = [i for i, src in enumerate(sources) if (src.causal_blocks or 1) > 1]
    if blocked:
        return _attend_causal_blocks(q, q_positions, sources, q_segments, blocked[0])
    b, t, h, d = q.shape
    hkv = sources[0].k.shape[1]
    qh = (q * jnp.asarray(d ** -0.5, q.dtype)).reshape(b, t, hkv, h // hkv, d).transpose(0, 2, 3, 1, 4)
    logits = [_source_logits(qh, q_positions, src, q_segments) for src in sources]
    top = functools.reduce(jnp.maximum, [_to_rows(jnp.max(lg, axis=-1, keepdims=True)) for lg in logits])
    out, total = None, None
    for lg, src in zip(logits, sources):
        w = jnp.exp(lg - _from_rows(top, lg.shape[0]))                       # [B', Hkv, C, G, T, S]
        norm = _to_rows(jnp.sum(w, axis=-1, keepdims=True))
        part = _source_values(w.astype(q.dtype), src)
        out, total = (part, norm) if out is None else (out + part, total + norm)
    out = out / total                                                         # [B, Hkv, G, T, D]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(q.dtype)


def _attend_causal_blocks(q: jax.Array, q_positions: jax.Array, sources: list[Source], q_segments: jax.Array | None,
                          own: int) -> jax.Array:
    """`attend` with sources[own] in causal slot order (`Source.causal_blocks`): each block of query rows
    against that source's keys up to the block's last slot (and every other source whole)."""
    src = sources[own]
    b, t, _, _ = q.shape
    if src.band or src.keys_last or src.k.shape[2] != t:
        raise ValueError(f"causal blocks need the queries' own {t} tokens as heads-first keys without a band, "
                         f"got keys {src.k.shape} (keys_last={src.keys_last}, band={src.band})")
    size = -(-t // src.causal_blocks)
    out = []
    for start in range(0, t, size):
        end = min(start + size, t)
        part = src.replace(k=src.k[:, :, :end], v=src.v[:, :, :end], positions=src.positions[:, :end],
                           segments=None if src.segments is None else src.segments[:, :end], causal_blocks=None)
        rows = slice(start, end)
        out.append(attend(q[:, rows], q_positions[:, rows], sources[:own] + [part] + sources[own + 1:],
                          None if q_segments is None else q_segments[:, rows]))
    return jnp.concatenate(out, axis=1)


class Attention(nnx.Module):
    """q/k/v projections (optional bias), rotary embeddings, GQA, o_proj (never a bias).

    Kernels are kept head-structured for clean tensor sharding: q `[D, H, hd]`, k/v `[D, Hkv, hd]`,
    o `[H, hd, D]`. With LoRA, targeted projections get an adapter `<name>_lora` (models/lora.py).
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
        add_adapters(self, cfg, {"q": ((d,), (h, hd)), "k": ((d,), (hkv, hd)), "v": ((d,), (hkv, hd)),
                                 "o": ((h, hd), (d,))}, rngs)

    def project(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x `[B, T, D]` → rotated q `[B, T, H, hd]`, rotated k and v `[B, T, Hkv, hd]`."""
        cdt = self.compute_dtype
        x = x.astype(cdt)
        q = adapted(self, "q", x, jnp.einsum("btd,dhk->bthk", x, self.q_proj[...].astype(cdt)))
        k = adapted(self, "k", x, jnp.einsum("btd,dhk->bthk", x, self.k_proj[...].astype(cdt)))
        v = adapted(self, "v", x, jnp.einsum("btd,dhk->bthk", x, self.v_proj[...].astype(cdt)))
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
        attn = attn.astype(cdt)
        return adapted(self, "o", attn, jnp.einsum("bthk,hkd->btd", attn, self.o_proj[...].astype(cdt)))
