"""Decode steps split over n local devices: row-parallel attention, column-parallel matrix products.

Why: XLA:CPU runs one operation at a time per device. In a decode step the weight products use
every core, but attention (a few dozen small products and reductions per layer, ~30% of a SmolLM2
step at 20 rows) runs on one core while the others wait. With n devices (on a CPU host:
`XLA_FLAGS=--xla_force_host_platform_device_count=n`, one per core), each device runs the attention
of its B / n rows, so the cores work in parallel, and each weight matrix is split between the
devices, so the weights are still read once per step in total.

Per layer (`SPLIT_RULES` places the weights): q/k/v kernels `[D, H, hd]` split on hd, one all-to-all
gives every device its rows with whole heads; attention of its rows against its own cache rows;
all-gather of the attention rows; o `[H, hd, D]` split on D, all-gathered; MLP gate/up split on F,
down `[F, D]` on the matching F rows, partial sums added across devices (one psum). The embedding
`[V, D]` is split on V (lookup: each device adds its rows, the others zeros; logits: vocabulary
columns, all-to-all so that each device gets its rows' full logits). Each device samples its rows
(with its share of the batch's random draw: a row gets the same uniform on any device count, so its
token changes only where float rounding moves a boundary) and the chosen tokens are all-gathered for
the next step's embedding.

The psum adds the MLP output in another order than one device does: results equal the one-device
decode up to float rounding (tests: log-probs and hidden states within 1e-5, same greedy tokens).
Gathering the down products instead (no cross-device sum) measured ~4 ms slower per SmolLM2 step and
was not bit-identical either (other shapes, other kernels).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r2rank_jax.mesh import MeshError, param_shardings
from r2rank_jax.models.attention import Source, attend
from r2rank_jax.models.kv_cache import KVCache
from r2rank_jax.models.rope import apply_rope, inverse_frequencies, rope_tables
from r2rank_jax.sampling.loop import SampleOutput, Step, sample_loop

AXIS = "split"

SPLIT_RULES = (
    (r"(^|/)embed$", (AXIS, None)),                      # [V, D]: vocabulary rows
    (r"(^|/)lm_head$", (None, AXIS)),                    # [D, V]
    (r"attn/(q|k|v)_proj$", (None, None, AXIS)),         # [D, H, hd]: head_dim
    (r"attn/(q|k|v)_bias$", (None, AXIS)),               # [H, hd]
    (r"attn/o_proj$", (None, None, AXIS)),               # [H, hd, D]
    (r"mlp/(gate|up)_proj$", (None, AXIS)),              # [D, F]: output columns
    (r"mlp/down_proj$", (AXIS, None)),                   # [F, D]: the rows matching this device's F columns
    (r"(norm|scale)$", (None,)),
)


def split_mesh(num_devices: int) -> Mesh:
    """A one-axis mesh over the first `num_devices` local devices."""
    devices = jax.local_devices()
    if num_devices > len(devices):
        raise MeshError(f"decode_devices={num_devices} but only {len(devices)} local {jax.default_backend()} "
                        f"device(s); on a CPU host start Python with "
                        f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices}")
    return Mesh(np.asarray(devices[:num_devices]), (AXIS,))


def split_shardings(state, mesh: Mesh):
    """NamedShardings of a Decoder state for the split decode (MeshError on a dim the devices do not divide)."""
    return param_shardings(state, mesh, rules=SPLIT_RULES)


def check_rows(batch: int, context_rows: int | None, n: int) -> int:
    """Rows per device; raises when B rows (U context rows) cannot be split over n devices."""
    if batch % n:
        raise ValueError(f"split decode: {batch} rows are not divisible by decode_devices={n}")
    rows = batch // n
    if context_rows is not None:
        group = batch // context_rows
        if rows % group and group % rows:
            raise ValueError(f"split decode: {rows} rows per device must cover whole users or part of one user "
                             f"(K={group} candidates per user); choose decode_devices dividing "
                             f"{context_rows} users or {group} candidates")
    return rows


def _local_context(context: KVCache | None, batch: int, rows: int) -> KVCache | None:
    """The context rows read by this device's rows [first, first + rows)."""
    if context is None:
        return None
    group = batch // context.batch
    first_user = jax.lax.axis_index(AXIS) * rows // group
    size = max(rows // group, 1)
    cut = lambda x: jax.lax.dynamic_slice_in_dim(x, first_user, size, 0)
    return context.replace(k=tuple(map(cut, context.k)), v=tuple(map(cut, context.v)),
                           positions=cut(context.positions))


def _gather(x: jax.Array, dim: int) -> jax.Array:
    return jax.lax.all_gather(x, AXIS, axis=dim, tiled=True)


def _embed(model, tokens: jax.Array) -> jax.Array:
    """tokens `[B, T]` → `[B, T, D]` from this device's vocabulary rows (exact: the other devices add zeros)."""
    table = model.embed[...]
    start = jax.lax.axis_index(AXIS) * table.shape[0]
    local = tokens - start
    inside = (local >= 0) & (local < table.shape[0])
    rows = jnp.take(table, jnp.clip(local, 0, table.shape[0] - 1), axis=0)
    return jax.lax.psum(jnp.where(inside[..., None], rows, jnp.zeros_like(rows)), AXIS)


def _layer(layer, i: int, x, positions, cos, sin, cache: KVCache, context: KVCache | None, rows: int):
    """One decoder layer: x `[B, T, D]` (all rows) → (x `[B, T, D]`, cache with this device's rows' k/v)."""
    attn = layer.attn
    cdt = attn.compute_dtype
    h = layer.input_norm(x).astype(cdt)

    def project(name):  # [B, T, heads, hd / n]: this device's head_dim columns of every row
        y = jnp.einsum("btd,dhk->bthk", h, getattr(attn, f"{name}_proj")[...].astype(cdt))
        return y + getattr(attn, f"{name}_bias")[...].astype(cdt) if attn.use_bias else y

    # One all-to-all for q, k and v: this device's rows, whole heads.
    qkv = jax.lax.all_to_all(jnp.concatenate([project("q"), project("k"), project("v")], axis=2), AXIS, 0, 3,
                             tiled=True)
    nq, nkv = attn.q_proj.shape[1], attn.k_proj.shape[1]
    q, k, v = jnp.split(qkv, [nq, nq + nkv], axis=2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    cache = cache.write_layer(i, k, v)
    sources = [Source(cache.k[i], cache.v[i], cache.positions, keys_last=True)]
    if context is not None:
        sources.insert(0, Source(context.k[i], context.v[i], context.positions, context.keys_last))
    out = _gather(attend(q, positions, sources), 0)                              # [B, T, H, hd]
    h = x + _gather(attn.output(out), 2).astype(x.dtype)                           # o: D columns
    # The MLP on this device's F columns (gate/up) and F rows (down): a partial sum of the output.
    return h + jax.lax.psum(layer.mlp(layer.post_attn_norm(h)), AXIS).astype(x.dtype), cache


def split_step(model, context: KVCache | None, rows: int) -> Step:
    """The decode step inside `shard_map`: model holds this device's weight shards (SPLIT_RULES); tokens,
    positions `[R, 1]` and the cache are this device's `rows` rows. Returns their hidden states `[R, D]`
    and logits `[R, V]`."""
    inv_freq = inverse_frequencies(model.config)

    def step(tokens, positions, cache):
        cos, sin = rope_tables(positions, inv_freq)
        x = _embed(model, _gather(tokens, 0)).astype(jnp.dtype(model.config.compute_dtype))   # [B, 1, D]
        cache = cache.write_positions(positions)
        for i, layer in enumerate(model.layers):
            x, cache = _layer(layer, i, x, positions, cos, sin, cache, context, rows)
        hidden = model.final_norm(x)[:, 0]                                                      # [B, D]
        # This device's vocabulary columns of every row → every vocabulary column of its rows.
        logits = jax.lax.all_to_all(model.logits(hidden), AXIS, 0, 1, tiled=True)
        first = jax.lax.axis_index(AXIS) * rows
        return jax.lax.dynamic_slice_in_dim(hidden, first, rows, 0), logits, cache.advance(tokens.shape[1])

    return step


@functools.partial(jax.jit, static_argnames=("graphdef", "mesh", "max_new_tokens", "num_candidates", "pad_id"),
                   donate_argnames=("cache",))
def decode_split(graphdef, state, cache: KVCache, logits, next_pos, params, context: KVCache | None, key, eos_ids,
                 stop_table, *, mesh: Mesh, max_new_tokens: int, num_candidates: int, pad_id: int
                 ) -> tuple[SampleOutput, KVCache]:
    """`decode_loop` with every step split over `mesh`: state placed by `split_shardings`; cache, logits,
    next_pos and params split by rows (`place_inputs`), context, key and tables replicated. Each
    device samples its rows; outputs come back split by rows."""
    batch = logits.shape[0]
    rows = check_rows(batch, None if context is None else context.batch, mesh.shape[AXIS])
    state_specs = jax.tree.map(lambda s: s.spec, split_shardings(state, mesh))
    by_rows = lambda tree: jax.tree.map(lambda x: P(AXIS) if x.ndim else P(), tree)

    def body(state, cache, logits, next_pos, params, context, key, eos_ids, stop_table):
        model = nnx.merge(graphdef, state)
        step = split_step(model, _local_context(context, batch, rows), rows)
        return sample_loop(step, model.config, cache, logits, next_pos, params, key, eos_ids, stop_table,
                           max_new_tokens=max_new_tokens, num_candidates=num_candidates, pad_id=pad_id,
                           rows_of=(batch, jax.lax.axis_index(AXIS) * rows),
                           any_live=lambda done: jax.lax.psum(jnp.sum(~done), AXIS) > 0)

    split_args = (cache, logits, next_pos, params)
    in_specs = (state_specs, *map(by_rows, split_args)) + (P(),) * 4
    out_specs = (P(AXIS), by_rows(cache))
    return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(
        state, *split_args, context, key, eos_ids, stop_table)


def place_inputs(mesh: Mesh, by_rows: tuple, replicated: tuple) -> tuple[tuple, tuple]:
    """Arrays of `by_rows` split by their leading (row) dim over the mesh (scalars replicated), `replicated`
    everywhere (device_put copies: the inputs may live on one device)."""
    rows = NamedSharding(mesh, P(AXIS))
    everywhere = NamedSharding(mesh, P())
    return (jax.tree.map(lambda x: jax.device_put(x, rows if jnp.ndim(x) else everywhere), by_rows),
            jax.device_put(replicated, everywhere))
