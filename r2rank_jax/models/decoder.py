"""Qwen2/Llama-family decoder in Flax NNX.

Inputs are token ids `[B, T]` and absolute positions `[B, T]` (-1 marks padding). Attention masks
come from positions (see kv_cache.py), so left padding, KV-cache decoding and shared-prefix branches
need no special cases. The forward pass returns final-normed hidden states; vocabulary logits are
computed only for the positions asked for.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from r2rank_jax.mesh import constrain
from r2rank_jax.models.attention import Attention, Source, attend
from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.kv_cache import KVCache, heads_first, keys_last
from r2rank_jax.models.lora_layers import adapted, add_adapters
from r2rank_jax.models.rope import inverse_frequencies, rope_tables


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, param_dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        # Same rounding order as transformers: normalize in float32, cast, then scale.
        return self.scale[...].astype(x.dtype) * y.astype(x.dtype)


class MLP(nnx.Module):
    """SwiGLU: down(silu(x @ gate) * (x @ up)); kernels gate/up `[D, F]`, down `[F, D]` (+ LoRA adapters)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(cfg.param_dtype)
        init = nnx.initializers.normal(0.02)
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nnx.Param(init(rngs.params(), (d, f), pdt))
        self.up_proj = nnx.Param(init(rngs.params(), (d, f), pdt))
        self.down_proj = nnx.Param(init(rngs.params(), (f, d), pdt))
        self.compute_dtype = jnp.dtype(cfg.compute_dtype)
        add_adapters(self, cfg, {"gate": ((d,), (f,)), "up": ((d,), (f,)), "down": ((f,), (d,))}, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        cdt = self.compute_dtype
        x = x.astype(cdt)
        gate = adapted(self, "gate", x, x @ self.gate_proj[...].astype(cdt))
        up = adapted(self, "up", x, x @ self.up_proj[...].astype(cdt))
        hidden = constrain(jax.nn.silu(gate) * up, ("batch", None, "mlp"))
        return adapted(self, "down", hidden, hidden @ self.down_proj[...].astype(cdt))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(cfg.param_dtype)
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        self.attn = Attention(cfg, rngs=rngs)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x, positions, cos, sin, own_kv, context_kv, segments=None, segment_band=None,
                 causal_blocks=None):
        """x `[B, T, D]`; own_kv: None (attend to this call's tokens) or a function writing this call's
        (k, v) into the cache and returning the cache's `Source`; context_kv: optional shared prefix `Source`;
        segments: optional `[B, T]` ids of sequences packed into one row (no cache); segment_band,
        causal_blocks: see `Decoder.__call__`.

        Returns (x `[B, T, D]`, (k, v) of this call's tokens `[B, T, Hkv, hd]`).
        """
        q, k, v = self.attn.project(self.input_norm(x), cos, sin)
        sources = [own_kv(k, v) if own_kv is not None
                   else Source(heads_first(k), heads_first(v), positions, segments=segments, band=segment_band,
                          causal_blocks=causal_blocks)]
        if context_kv is not None:
            sources.insert(0, context_kv)
        h = x + self.attn.output(attend(q, positions, sources, segments)).astype(x.dtype)
        out = h + self.mlp(self.post_attn_norm(h)).astype(x.dtype)
        return constrain(out, ("batch", None, None)), (k, v)


@flax.struct.dataclass
class DecoderOutput:
    hidden: jax.Array                  # [B, T, D] final-normed last-layer hidden states
    logits: jax.Array | None = None    # [B, N, V] float32 at the requested positions
    cache: KVCache | None = None       # updated own cache (when one was given)
    kv: tuple | None = None            # per-layer (k, v) `[B, T, Hkv, hd]` of this call's tokens, if asked


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Decoder(nnx.Module):
    """The causal LM. Parameter paths: embed, layers/i/{input_norm,attn,post_attn_norm,mlp}, final_norm, lm_head."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        pdt = jnp.dtype(cfg.param_dtype)
        self.embed = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.vocab_size, cfg.hidden_size), pdt))
        self.layers = nnx.List([DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pdt)
        if not cfg.tie_word_embeddings:
            self.lm_head = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (cfg.hidden_size, cfg.vocab_size), pdt))

    def __call__(self, tokens: jax.Array, positions: jax.Array, *, cache: KVCache | None = None,
                 context: KVCache | None = None, logits_at: jax.Array | str | None = None,
                 return_kv: bool = False, segments: jax.Array | None = None,
                 segment_band: int | None = None, causal_blocks: int | None = None,
                 unroll: bool = False) -> DecoderOutput:
        """Runs the decoder.

        tokens, positions: `[B, T]` int (position -1 = padding, never attended to).
        cache: own KV cache `[B, S]`: this call's keys/values are written at slot `cache.end` and the
            queries attend to the whole cache. Without one, queries attend to this call's tokens.
        context: read-only shared context with batch `B // group` (query row b reads row b // group),
            e.g. the prefilled prefix shared by the K candidate branches of a user.
        logits_at: None (no logits), "all", or indices `[B, N]` into T → logits `[B, N, V]` float32.
        return_kv: also return this call's per-layer keys/values (to build a context from a prefix).
        segments: `[B, T]` ids of several sequences packed into one row: a token attends only to the
            tokens of its own segment (and to the whole context). Not with a cache.
        segment_band: static; with segments, promises that every segment is contiguous and at most this
            many tokens long, and that it divides T: attention among this call's tokens then computes
            only `[T, 2 * band]` logits (each block of `band` queries against its block and the one
            before) instead of `[T, T]`. Same result.
        causal_blocks: static; without a cache, promises that this call's tokens are in causal slot order
            (no token sees a token in a later slot, e.g. a left-padded prompt followed by a right-padded
            response): attention among them then runs as this many blocks of query rows, each against the
            keys up to its own last slot (`attention.causal_block_count` picks it). Same result for every
            token that sees any; for training, where the `[T, T]` logits dominate a small model's step.
        unroll: run the layers one after the other even when `config.scan_layers` (for inference: the
            scan stacks a copy of every layer's weights on each call, ~20% of a SmolLM2 prompt prefill).
        """
        cfg = self.config
        if tokens.shape != positions.shape or tokens.ndim != 2:
            raise ValueError(f"tokens {tokens.shape} and positions {positions.shape} must both be [B, T]")
        if segments is not None and (cache is not None or segments.shape != tokens.shape):
            raise ValueError(f"segments {segments.shape} must be [B, T] like tokens {tokens.shape}, without a cache")
        if segment_band is not None and (segments is None or segment_band < 1 or tokens.shape[1] % segment_band):
            raise ValueError(f"segment_band={segment_band} needs segments and must divide the {tokens.shape[1]} tokens")
        if causal_blocks is not None and (cache is not None or segment_band is not None or causal_blocks < 1):
            raise ValueError(f"causal_blocks={causal_blocks} must be >= 1, without a cache or a segment_band")
        cdt = jnp.dtype(cfg.compute_dtype)
        x = constrain(jnp.take(self.embed[...], tokens, axis=0).astype(cdt), ("batch", None, None))
        cos, sin = rope_tables(positions, inverse_frequencies(cfg))
        if cache is not None:
            cache.check_room(tokens.shape[1])
            cache = cache.write_positions(positions)
        if cache is None and cfg.scan_layers and not unroll and len(self.layers) > 1:
            x, kv_out = self._scan_layers(x, positions, cos, sin, context, return_kv, segments, segment_band,
                                          causal_blocks)
        else:
            kv_out = []
            for i, layer in enumerate(self.layers):
                own = None
                if cache is not None:
                    def own(k, v, i=i):
                        nonlocal cache
                        cache = cache.write_layer(i, k, v)
                        return Source(cache.k[i], cache.v[i], cache.positions, keys_last=True)
                ctx = None if context is None else Source(context.k[i], context.v[i], context.positions,
                                                          context.keys_last)
                x, kv = self._run_layer(layer, x, positions, cos, sin, own, ctx, segments, segment_band, causal_blocks)
                kv_out.append(kv)
        hidden = self.final_norm(x)
        if cache is not None:
            cache = cache.advance(tokens.shape[1])
        logits = None
        if isinstance(logits_at, str):
            if logits_at != "all":
                raise ValueError(f"logits_at must be None, 'all' or an index array, got {logits_at!r}")
            logits = self.logits(hidden)
        elif logits_at is not None:
            logits = self.logits(jnp.take_along_axis(hidden, logits_at[..., None].astype(jnp.int32), axis=1))
        return DecoderOutput(hidden=hidden, logits=logits, cache=cache, kv=tuple(kv_out) if return_kv else None)

    def _run_layer(self, layer, x, positions, cos, sin, own, ctx, segments, segment_band=None, causal_blocks=None):
        remat = self.config.remat
        if remat == "none" or own is not None:  # no remat while decoding: there is no backward pass
            return layer(x, positions, cos, sin, own, ctx, segments, segment_band, causal_blocks)
        fn = nnx.remat(lambda lyr, *a: lyr(*a, segment_band=segment_band, causal_blocks=causal_blocks),
                       policy=_REMAT_POLICIES[remat])
        return fn(layer, x, positions, cos, sin, None, ctx, segments)

    def _scan_layers(self, x, positions, cos, sin, context, return_kv, segments=None, segment_band=None,
                     causal_blocks=None):
        """All layers as one `lax.scan` over their stacked states (no own cache).

        x `[B, T, D]` → (x `[B, T, D]`, per-layer (k, v) `[B, T, Hkv, hd]` if return_kv else []).
        Stacking copies the layer weights once per call (a transient as large as the layer weights);
        in exchange the loop body is compiled once and, with remat, checkpointed per layer: the
        backward pass keeps only each layer's input and recomputes one layer at a time.
        """
        graphdef = nnx.graphdef(self.layers[0])
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(layer) for layer in self.layers])
        ctx_kv = None if context is None else (jnp.stack(context.k), jnp.stack(context.v))

        def body(x, xs):
            state, ctx = xs
            layer = nnx.merge(graphdef, state)
            ctx = None if ctx is None else Source(ctx[0], ctx[1], context.positions, context.keys_last)
            x, kv = layer(x, positions, cos, sin, None, ctx, segments, segment_band, causal_blocks)
            return x, (kv if return_kv else None)

        if self.config.remat != "none":
            body = jax.checkpoint(body, policy=_REMAT_POLICIES[self.config.remat], prevent_cse=False)
        x, kvs = jax.lax.scan(body, x, (stacked, ctx_kv))
        if not return_kv:
            return x, []
        return x, [(kvs[0][i], kvs[1][i]) for i in range(len(self.layers))]

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden `[..., D]` → float32 logits `[..., V]` through the (tied or untied) LM head."""
        cdt = jnp.dtype(self.config.compute_dtype)
        h = hidden.astype(cdt)
        if self.config.tie_word_embeddings:
            out = jnp.einsum("...d,vd->...v", h, self.embed[...].astype(cdt), preferred_element_type=jnp.float32)
        else:
            out = jnp.einsum("...d,dv->...v", h, self.lm_head[...].astype(cdt), preferred_element_type=jnp.float32)
        return constrain(out, ("batch",) + (None,) * (out.ndim - 2) + ("vocab",)) if out.ndim >= 2 else out


def context_from_kv(kv: tuple, positions: jax.Array, *, for_decoding: bool = False) -> KVCache:
    """A read-only context (e.g. a prefilled shared prefix) from `return_kv=True` output and its positions `[U, P]`.

    for_decoding: store the keys last (`[U, Hkv, hd, P]`), the layout decode steps read fastest; the
    training path keeps them slot-major (its backward pass was tuned with that layout).
    """
    to_keys = keys_last if for_decoding else heads_first
    return KVCache(k=tuple(to_keys(k) for k, _ in kv), v=tuple(heads_first(v) for _, v in kv),
                   positions=positions.astype(jnp.int32),
                   end=jnp.asarray(positions.shape[1], jnp.int32), keys_last=for_decoding)


def param_count(tree: Any) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(tree))
