"""The sampler: jitted prefill (plain or shared-prefix) and the jitted decode loop, with bucketed shapes.

Two ways in, same decode loop:

- `generate(prompts)`: B independent prompts, left-padded to a bucket length T; one prefill writes
  them into a cache of T + max_new_tokens slots.
- `generate_shared(prefixes, suffixes)`: U users with K candidate suffixes each. Each user's prefix
  is prefilled once (`[U, P]`) and read by its K branches through the decoder's `context=` path
  (no K-fold copy); the K suffixes are prefilled into a small own cache of S + max_new_tokens slots,
  and the U * K rows decode together. Row u * K + k is user u, candidate k. By default the K
  suffixes of a user are prefilled packed into one row (segment-masked attention), so a prefill
  costs the suffixes' total length, not K times the longest one (and attention among the packed
  tokens is banded: each block of suffixes against itself and the block before, `segment_band`);
  their keys/values are then gathered into the rows' left-padded caches.

Prefills run the layers unrolled (`Decoder(..., unroll=True)`; a scan over the layers would copy
every layer's weights on each call). Shapes are static per (batch, bucket, max_new_tokens): prompt
lengths are padded up to the smallest bucket that fits. Sampling parameters, the PRNG key, the EOS ids and the stop tables are traced, and
the model state is an argument, so new parameters or new sampling settings never recompile. The
own cache is donated to the decode loop, which updates it in place.

`SamplerConfig.decode_devices=n` splits every decode step over n local devices (split.py: each
device attends for B / n rows and holds 1/n of every weight matrix); on a CPU host this runs the
rows' attention on all cores. Prefills stay on the default device; the sampler keeps a second copy
of the weights, split over the devices (`state=` weights are split again on every decode call).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax import buckets as buckets_
from r2rank_jax.models.decoder import Decoder, context_from_kv
from r2rank_jax.models.kv_cache import KVCache
from r2rank_jax.sampling.loop import SampleOutput, decode_loop
from r2rank_jax.sampling import split
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.stops import StopStrings

# Padded prompt lengths: finer than powers of two (padding costs prefill time and decode attention),
# coarse enough that a rollout run compiles only a handful of variants.
DEFAULT_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 576, 640, 768, 896, 1024, 1280, 1536,
                   2048, 3072, 4096)


@dataclasses.dataclass(frozen=True)
class DecodedRows:
    """A `generate_shared` call's output with the state its decode ended in, for reading the rows on
    (`eval.verbalizer.AnswerScorer.logprobs_after_decode`): the own cache `[B, S + N]` (slots [0, S): the
    left-padded suffix; slot S + i: generated token i, written even after the row stopped), the shared
    context, and `next_pos` `[B]` (the position of generated token 0)."""

    output: SampleOutput
    cache: KVCache
    context: KVCache | None
    next_pos: np.ndarray
    suffix_slots: int


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    max_new_tokens: int = 128
    eos_ids: tuple[int, ...] = ()
    pad_id: int = 0
    buckets: tuple[int, ...] = DEFAULT_BUCKETS  # allowed padded prompt (prefix, suffix) lengths
    num_candidates: int = 64                    # top-k prefilter for top-k/top-p (filters.py)
    pack_suffixes: bool = True                  # prefill a user's K suffixes as one packed row (when shorter)
    decode_devices: int = 1                     # split each decode step over this many local devices (split.py)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.decode_devices < 1:
            raise ValueError(f"decode_devices must be >= 1, got {self.decode_devices}")
        buckets_.check(self.buckets)

    def bucket(self, length: int, what: str = "prompt") -> int:
        return buckets_.choose(length, self.buckets, what, allow_empty=False, article="",
                               hint=f" (the KV cache holds at most {self.buckets[-1]} prompt tokens + "
                                    f"{self.max_new_tokens} new ones); raise SamplerConfig.buckets or shorten the prompt")


# ---------------------------------------------------------------------------------- jitted pieces

@functools.partial(jax.jit, static_argnames=("graphdef", "cache_size"))
def _prefill(graphdef, state, tokens, positions, context, *, cache_size: int):
    """Prompt `[B, T]` (left padded) → (own cache `[B, cache_size]`, last-token logits `[B, V]`)."""
    model = nnx.merge(graphdef, state)
    b, t = tokens.shape
    cache = KVCache.init(model.config, b, cache_size)
    out = model(tokens, positions, cache=cache, context=context, logits_at=jnp.full((b, 1), t - 1, jnp.int32))
    return out.cache, out.logits[:, 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "cache_size", "band"))
def _prefill_packed(graphdef, state, tokens, positions, segments, last, rows_t, context, *, cache_size: int,
                    band: int | None):
    """Each user's K suffixes packed into one row `[U, T]` → (own cache `[U * K, cache_size]`, last logits `[U * K, V]`).

    segments `[U, T]`: suffix index of each packed token (-1: padding); last `[U, K]`: index of each
    suffix's last token; rows_t `[U * K, S]`: the packed token (of user row // K) held by each slot of
    a row's left-padded suffix region (-1: padding slot). band: `Decoder`'s segment_band (None: dense).
    """
    return prefill_packed_rows(nnx.merge(graphdef, state), tokens, positions, segments, last, rows_t, context,
                               cache_size=cache_size, band=band)


def prefill_packed_rows(model: Decoder, tokens, positions, segments, last, rows_t, context, *, cache_size: int,
                        band: int | None) -> tuple[KVCache, jax.Array]:
    """`_prefill_packed`'s computation, for use inside another jitted function (`eval.verbalizer`)."""
    out = model(tokens, positions, context=context, segments=segments, segment_band=band, return_kv=True,
                logits_at=last, unroll=True)
    rows_u = jnp.arange(rows_t.shape[0])[:, None] // last.shape[1]                 # [U * K, 1]
    valid = rows_t >= 0
    t = jnp.maximum(rows_t, 0)
    cache = KVCache.init(model.config, rows_t.shape[0], cache_size)
    cache = cache.write_positions(jnp.where(valid, positions[rows_u, t], -1))
    for i, (k, v) in enumerate(out.kv):
        cache = cache.write_layer(i, k[rows_u, t], v[rows_u, t])
    return cache.advance(rows_t.shape[1]), out.logits.reshape(-1, out.logits.shape[-1])


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _prefill_context(graphdef, state, tokens, positions):
    """Shared prefixes `[U, P]` (left padded) → read-only context KV cache."""
    model = nnx.merge(graphdef, state)
    return context_from_kv(model(tokens, positions, return_kv=True, unroll=True).kv, positions, for_decoding=True)


_decode = jax.jit(decode_loop, static_argnames=("graphdef", "max_new_tokens", "num_candidates", "pad_id", "total_rows"),
                  donate_argnames=("cache",))


def compile_count() -> int:
    """Number of compiled variants of the sampler's jitted functions (for no-recompile checks)."""
    return sum(f._cache_size() for f in (_prefill, _prefill_packed, _prefill_context, _decode, split.decode_split))


# ---------------------------------------------------------------------------------- padding helpers

def pad_left(seqs: Sequence[Sequence[int]], length: int, pad_id: int, start: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, positions) `[B, length]` int32, rows right-aligned; row b's positions start at start[b]."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    positions = np.full((len(seqs), length), -1, np.int32)
    for b, s in enumerate(seqs):
        n = len(s)
        tokens[b, length - n:] = s
        positions[b, length - n:] = np.arange(n) + (0 if start is None else start[b])
    return tokens, positions


def packed_layout(suffixes, prefix_lengths, slots: int, length: int, pad_id: int):
    """Host-side layout of `_prefill_packed`: (tokens, positions, segments) `[U, length]` (right padded),
    last `[U, K]`, rows_t `[U * K, slots]` (each row's suffix right-aligned in its slots)."""
    u, k = len(suffixes), len(suffixes[0])
    tokens = np.full((u, length), pad_id, np.int32)
    positions = np.full((u, length), -1, np.int32)
    segments = np.full((u, length), -1, np.int32)
    last = np.zeros((u, k), np.int32)
    rows_t = np.full((u * k, slots), -1, np.int32)
    for ui, user in enumerate(suffixes):
        off = 0
        for ki, r in enumerate(user):
            n = len(r)
            tokens[ui, off:off + n] = r
            positions[ui, off:off + n] = prefix_lengths[ui] + np.arange(n)
            segments[ui, off:off + n] = ki
            last[ui, ki] = off + n - 1
            rows_t[ui * k + ki, slots - n:] = off + np.arange(n)
            off += n
    return tokens, positions, segments, last, rows_t


def segment_band(longest: int, length: int) -> int | None:
    """Block size for banded attention among packed suffixes of at most `longest` tokens in a row of
    `length`: the smallest divisor of length that holds a whole suffix, or None (dense) when the blocks
    would not save at least half of the `[length, length]` logits."""
    band = next(c for c in range(longest, length + 1) if length % c == 0)
    return band if 4 * band <= length else None


class Sampler:
    """Frozen sampler for one model architecture; pass `state=` to sample with updated weights."""

    def __init__(self, model: Decoder, config: SamplerConfig = SamplerConfig(), stops: StopStrings | None = None):
        self.graphdef, self.state = nnx.split(model)
        self.model_config = model.config
        self.config = config
        vocab = model.config.vocab_size
        stops = stops or StopStrings.none(vocab)
        if stops.vocab_size != vocab:
            raise ValueError(f"stop tables cover {stops.vocab_size} tokens, the model has {vocab}")
        self.stops = stops
        self._stop_table = stops.device_table()
        self._eos = jnp.asarray(config.eos_ids or (-1,), jnp.int32)
        self._mesh = self._split_state = None
        if config.decode_devices > 1:
            if model.config.lora.enabled:
                raise ValueError("decode_devices > 1 does not support LoRA adapters; merge them or decode on one device")
            self._mesh = split.split_mesh(config.decode_devices)
            self._split_state = jax.device_put(self.state, split.split_shardings(self.state, self._mesh))
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise dataclasses.FrozenInstanceError(f"Sampler is frozen (tried to set {name!r})")
        super().__setattr__(name, value)

    def _state(self, state):
        return self.state if state is None else state

    # ------------------------------------------------------------------------------ array API

    def prefill(self, tokens, positions, *, context: KVCache | None = None, state=None) -> tuple[KVCache, jax.Array]:
        """Left-padded prompts `[B, T]` → (own cache with room for max_new_tokens, last logits `[B, V]`)."""
        positions = np.asarray(positions)
        if tokens.shape != positions.shape or positions.ndim != 2:
            raise ValueError(f"tokens {tokens.shape} and positions {positions.shape} must both be [B, T]")
        if np.any(np.max(positions, axis=1) < 0):
            raise ValueError("empty prompt: a row of positions holds only padding (-1)")
        if positions[:, -1].min() < 0:
            raise ValueError("prompts must be left padded: the last column holds padding")
        last = int(positions.max()) + self.config.max_new_tokens
        if last > self.model_config.max_position_embeddings:
            raise ValueError(f"positions up to {last} exceed max_position_embeddings={self.model_config.max_position_embeddings}")
        size = tokens.shape[1] + self.config.max_new_tokens
        return _prefill(self.graphdef, self._state(state), jnp.asarray(tokens), jnp.asarray(positions), context,
                        cache_size=size)

    def decode(self, cache: KVCache, logits: jax.Array, next_pos, params: SamplingParams, key: jax.Array, *,
               context: KVCache | None = None, state=None, rows: tuple[int, int] | None = None,
               keep_cache: bool = False) -> SampleOutput | tuple[SampleOutput, KVCache]:
        """Decode loop after a prefill (the cache is donated: do not reuse it). rows=(total, first): the B rows
        are rows [first, first + B) of a batch of `total` rows (`generate_shared`). keep_cache: also return the
        cache the loop ended with (on the default device)."""
        b = logits.shape[0]
        params.check_batch(b)
        if rows is not None and not (0 <= rows[1] and rows[1] + b <= rows[0]):
            raise ValueError(f"rows={rows}: {b} rows starting at {rows[1]} do not fit a batch of {rows[0]}")
        if self._mesh is not None:
            if rows is not None:
                raise ValueError("rows= (a host's block of a batch) is not supported with decode_devices > 1")
            out, cache = self._decode_split(cache, logits, next_pos, params, key, context, state)
            return (out, jax.device_put(cache, jax.devices()[0])) if keep_cache else out
        total, first = (None, None) if rows is None else (int(rows[0]), jnp.asarray(rows[1], jnp.int32))
        out, cache = _decode(self.graphdef, self._state(state), cache, context, logits, jnp.asarray(next_pos, jnp.int32),
                         params, key, self._eos, self._stop_table, first, max_new_tokens=self.config.max_new_tokens,
                         num_candidates=self.config.num_candidates, pad_id=self.config.pad_id, total_rows=total)
        return (out, cache) if keep_cache else out

    def _decode_split(self, cache, logits, next_pos, params, key, context, state) -> tuple[SampleOutput, KVCache]:
        mesh = self._mesh
        split.check_rows(logits.shape[0], None if context is None else context.batch, mesh.size)
        state = self._split_state if state is None else jax.device_put(state, split.split_shardings(state, mesh))
        by_rows, everywhere = split.place_inputs(mesh, (cache, logits, jnp.asarray(next_pos, jnp.int32), params),
                                                 (context, key, self._eos, self._stop_table))
        return split.decode_split(self.graphdef, state, *by_rows, *everywhere, mesh=mesh,
                                  max_new_tokens=self.config.max_new_tokens,
                                  num_candidates=self.config.num_candidates, pad_id=self.config.pad_id)

    # ------------------------------------------------------------------------------ token-list API

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, key: jax.Array, *,
                 state=None) -> SampleOutput:
        """B independent prompts (token id lists) → SampleOutput `[B, N]`."""
        if not prompts:
            raise ValueError("no prompts")
        t = self.config.bucket(max(len(p) for p in prompts))
        for p in prompts:
            self.config.bucket(len(p))
        tokens, positions = pad_left(prompts, t, self.config.pad_id)
        cache, logits = self.prefill(tokens, positions, state=state)
        next_pos = np.array([len(p) for p in prompts], np.int32)
        return self.decode(cache, logits, next_pos, params, key, state=state)

    def prefill_shared(self, prefixes: Sequence[Sequence[int]], state=None) -> KVCache:
        """U shared prefixes → context KV cache `[U, P_bucket]`."""
        if not prefixes:
            raise ValueError("no prefixes")
        p = self.config.bucket(max(len(x) for x in prefixes), "prefix")
        for x in prefixes:
            self.config.bucket(len(x), "prefix")
        tokens, positions = pad_left(prefixes, p, self.config.pad_id)
        return _prefill_context(self.graphdef, self._state(state), jnp.asarray(tokens), jnp.asarray(positions))

    def prefill_suffixes(self, context: KVCache, prefix_lengths: Sequence[int],
                         suffixes: Sequence[Sequence[Sequence[int]]], *, state=None
                         ) -> tuple[KVCache, jax.Array, np.ndarray]:
        """U users' K suffixes after their prefilled prefixes (`context`, `prefill_shared`) →
        (own cache `[U * K, S + max_new_tokens]`, last-token logits `[U * K, V]`, next positions `[U * K]`)."""
        if len(prefix_lengths) != len(suffixes):
            raise ValueError(f"{len(prefix_lengths)} prefixes but {len(suffixes)} suffix lists")
        ks = {len(s) for s in suffixes}
        if len(ks) != 1 or 0 in ks:
            raise ValueError(f"every user needs the same, non-zero number of suffixes; got {sorted(ks)}")
        rows = [s for user in suffixes for s in user]
        starts = [n for n, user in zip(prefix_lengths, suffixes) for _ in user]
        s = self.config.bucket(max(len(r) for r in rows), "suffix")
        for r in rows:
            self.config.bucket(len(r), "suffix")
        next_pos = np.array([st + len(r) for st, r in zip(starts, rows)], np.int32)
        if int(next_pos.max()) + self.config.max_new_tokens > self.model_config.max_position_embeddings:
            raise ValueError(f"positions up to {int(next_pos.max()) + self.config.max_new_tokens} exceed "
                             f"max_position_embeddings={self.model_config.max_position_embeddings}")
        total = max(sum(map(len, user)) for user in suffixes)
        packed_len = buckets_.fitting(total, self.config.buckets)
        # Packing pays when one row of all K suffixes is shorter than K rows padded to the longest.
        if not self.config.pack_suffixes or packed_len is None or packed_len >= len(suffixes[0]) * s:
            tokens, positions = pad_left(rows, s, self.config.pad_id, starts)
            cache, logits = self.prefill(tokens, positions, context=context, state=state)
            return cache, logits, next_pos
        packed = packed_layout(suffixes, prefix_lengths, s, packed_len, self.config.pad_id)
        cache, logits = _prefill_packed(self.graphdef, self._state(state), *map(jnp.asarray, packed), context,
                                        cache_size=s + self.config.max_new_tokens, band=segment_band(s, packed_len))
        return cache, logits, next_pos

    def generate_shared(self, prefixes: Sequence[Sequence[int]], suffixes: Sequence[Sequence[Sequence[int]]],
                        params: SamplingParams, key: jax.Array, *, state=None, rows: tuple[int, int] | None = None,
                        keep_cache: bool = False) -> SampleOutput | DecodedRows:
        """U prefixes, U lists of K suffixes → SampleOutput `[U * K, N]` (row u * K + k), or with keep_cache the
        `DecodedRows` that hold it and the decode's final cache.

        rows=(total, first): these U * K rows are rows [first, first + U * K) of a batch of `total` rows
        (a host's users of a global batch): each row samples with the random number it would get in the
        whole batch, so the hosts' blocks together equal one call on the whole batch (up to float rounding).
        """
        if len(prefixes) != len(suffixes):
            raise ValueError(f"{len(prefixes)} prefixes but {len(suffixes)} suffix lists")
        context = self.prefill_shared(prefixes, state)
        cache, logits, next_pos = self.prefill_suffixes(context, [len(p) for p in prefixes], suffixes, state=state)
        if not keep_cache:
            return self.decode(cache, logits, next_pos, params, key, context=context, state=state, rows=rows)
        suffix_slots = cache.size - self.config.max_new_tokens
        out, cache = self.decode(cache, logits, next_pos, params, key, context=context, state=state, rows=rows,
                                 keep_cache=True)
        return DecodedRows(out, cache, context, next_pos, suffix_slots)
