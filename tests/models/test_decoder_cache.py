"""KV-cache decoding and shared-context attention against the plain forward pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r2rank_jax.models.batching import left_pad
from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder, context_from_kv
from r2rank_jax.models.kv_cache import KVCache

CFG = ModelConfig(vocab_size=53, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=8, attention_bias=True)


@pytest.fixture(scope="module")
def model():
    return Decoder(CFG, rngs=nnx.Rngs(0))


def test_incremental_decoding_equals_full_forward(model):
    rng = np.random.default_rng(1)
    seqs = [list(rng.integers(0, 53, n)) for n in (6, 3)]
    tokens, positions = left_pad(seqs)
    extra = rng.integers(0, 53, (2, 4)).astype(np.int32)
    full_tokens = np.concatenate([tokens, extra], 1)
    full_pos = np.concatenate([positions, positions.max(1, keepdims=True) + 1 + np.arange(4)], 1)
    full = model(jnp.asarray(full_tokens), jnp.asarray(full_pos), logits_at="all")

    cache = KVCache.init(CFG, batch=2, size=16)
    out = model(jnp.asarray(tokens), jnp.asarray(positions), cache=cache, logits_at="all")
    cache = out.cache
    assert int(cache.end) == tokens.shape[1]
    steps = [out.logits]
    for t in range(4):
        out = model(jnp.asarray(extra[:, t:t + 1]), jnp.asarray(full_pos[:, tokens.shape[1] + t:][:, :1]),
                    cache=cache, logits_at="all")
        cache = out.cache
        steps.append(out.logits)
    inc = np.concatenate([np.asarray(s) for s in steps], 1)
    real = full_pos >= 0
    np.testing.assert_allclose(inc[real], np.asarray(full.logits)[real], atol=1e-5)


def test_cache_overflow_is_an_error(model):
    cache = KVCache.init(CFG, batch=1, size=4)
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(jnp.zeros((1, 5), jnp.int32), jnp.arange(5)[None], cache=cache)


def test_shared_prefix_context_equals_full_sequences(model):
    """K branches attending to one prefilled prefix == K full sequences (prefix + suffix)."""
    rng = np.random.default_rng(2)
    k = 3
    prefixes = [list(rng.integers(0, 53, n)) for n in (7, 4)]          # U = 2 users
    suffixes = [[list(rng.integers(0, 53, n)) for n in (2, 3, 1)] for _ in prefixes]
    p_tok, p_pos = left_pad(prefixes)
    pre = model(jnp.asarray(p_tok), jnp.asarray(p_pos), return_kv=True)
    context = context_from_kv(pre.kv, jnp.asarray(p_pos))
    # Suffix rows [U * K, S], right padded, positions continue after each user's prefix.
    s_len = 3
    s_tok = np.zeros((2 * k, s_len), np.int32)
    s_pos = np.full((2 * k, s_len), -1, np.int32)
    for u, (pfx, sfx) in enumerate(zip(prefixes, suffixes)):
        for c, s in enumerate(sfx):
            s_tok[u * k + c, :len(s)] = s
            s_pos[u * k + c, :len(s)] = len(pfx) + np.arange(len(s))
    branch = model(jnp.asarray(s_tok), jnp.asarray(s_pos), context=context, logits_at="all")

    full = [pfx + s for pfx, sfx in zip(prefixes, suffixes) for s in sfx]
    f_tok, f_pos = left_pad(full)
    ref = model(jnp.asarray(f_tok), jnp.asarray(f_pos), logits_at="all")
    width = f_tok.shape[1]
    for u, (pfx, sfx) in enumerate(zip(prefixes, suffixes)):
        for c, s in enumerate(sfx):
            row = u * k + c
            np.testing.assert_allclose(np.asarray(branch.logits)[row, :len(s)],
                                       np.asarray(ref.logits)[row, width - len(s):], atol=1e-5)
            np.testing.assert_allclose(np.asarray(branch.hidden)[row, :len(s)],
                                       np.asarray(ref.hidden)[row, width - len(s):], atol=1e-5)


def test_remat_gives_same_gradients(model):
    tokens, positions = left_pad([[1, 2, 3, 4], [5, 6]])
    graphdef, state = nnx.split(model)

    def loss(state, remat):
        m = nnx.merge(graphdef, state)
        m.config = m.config.replace(remat=remat)
        out = m(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all")
        return jnp.sum(jnp.where(jnp.asarray(positions)[..., None] >= 0, jax.nn.log_softmax(out.logits), 0.0))

    assert "remat" not in str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(state, "none"))
    assert "remat" in str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(state, "full"))
    g0 = jax.jit(jax.grad(loss), static_argnums=1)(state, "none")
    for mode in ("full", "dots"):
        g1 = jax.jit(jax.grad(loss), static_argnums=1)(state, mode)
        for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_bfloat16_compute_is_close_to_float32():
    m32 = Decoder(CFG, rngs=nnx.Rngs(3))
    _, state = nnx.split(m32)
    m16 = nnx.merge(nnx.split(Decoder(CFG.replace(compute_dtype="bfloat16"), rngs=nnx.Rngs(3)))[0], state)
    tokens, positions = left_pad([[1, 2, 3, 4, 5], [6, 7]])
    a = m32(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all").logits
    b = m16(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all").logits
    assert b.dtype == jnp.float32
    real = positions >= 0
    assert np.abs(np.asarray(a) - np.asarray(b))[real].max() < 0.05
    assert np.abs(np.asarray(a) - np.asarray(b))[real].max() > 0  # bf16 really ran


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scan_over_layers_equals_python_loop(remat):
    """The scanned layer stack (stacked layer states, checkpointed body) == the per-layer Python loop:
    hidden states, logits, returned keys/values, a shared-prefix context, and the gradients."""
    cfg = CFG.replace(num_layers=3, remat=remat)
    graphdef, state = nnx.split(Decoder(cfg.replace(scan_layers=True), rngs=nnx.Rngs(3)))
    loop_def, _ = nnx.split(Decoder(cfg.replace(scan_layers=False), rngs=nnx.Rngs(3)))
    p_tok, p_pos = (jnp.asarray(a) for a in left_pad([[1, 2, 3, 4, 5], [6, 7, 8]]))
    s_tok = jnp.asarray([[9, 10], [11, 0], [12, 13], [14, 15]])
    s_pos = jnp.asarray([[5, 6], [5, -1], [3, 4], [3, 4]])

    def run(gdef, state):
        m = nnx.merge(gdef, state)
        pre = m(p_tok, p_pos, return_kv=True, logits_at="all")
        out = m(s_tok, s_pos, context=context_from_kv(pre.kv, p_pos), logits_at="all")
        loss = jnp.sum(jnp.where(s_pos[..., None] >= 0, jax.nn.log_softmax(out.logits), 0.0)) + jnp.sum(pre.logits[:, -1])
        return loss, (pre, out)

    grads = {}
    for name, gdef in (("scan", graphdef), ("loop", loop_def)):
        (loss, (pre, out)), g = jax.jit(jax.value_and_grad(lambda s, gdef=gdef: run(gdef, s), has_aux=True))(state)
        grads[name] = (loss, pre, out, g)
    (l0, pre0, out0, g0), (l1, pre1, out1, g1) = grads["scan"], grads["loop"]
    assert "scan" in str(jax.make_jaxpr(lambda s: run(graphdef, s)[0])(state))
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves((pre0.kv, pre0.hidden, out0.hidden, out0.logits)),
                    jax.tree_util.tree_leaves((pre1.kv, pre1.hidden, out1.hidden, out1.logits))):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_unroll_runs_the_python_loop_on_a_scan_model():
    """unroll=True (the sampler's prefills) on a scan_layers model: no scan in the program, and the
    same outputs as the model built without scan_layers."""
    cfg = CFG.replace(num_layers=3)
    scanned = Decoder(cfg.replace(scan_layers=True), rngs=nnx.Rngs(3))
    looped = Decoder(cfg.replace(scan_layers=False), rngs=nnx.Rngs(3))
    tok, pos = (jnp.asarray(a) for a in left_pad([[1, 2, 3, 4, 5], [6, 7, 8]]))
    run = lambda m, **kw: m(tok, pos, return_kv=True, logits_at="all", **kw)
    assert "scan" in str(jax.make_jaxpr(lambda: run(scanned).logits)())
    assert "scan" not in str(jax.make_jaxpr(lambda: run(scanned, unroll=True).logits)())
    for a, b in zip(jax.tree_util.tree_leaves(jax.jit(lambda: run(scanned, unroll=True))()),
                    jax.tree_util.tree_leaves(jax.jit(lambda: run(looped))())):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize("for_decoding", [True, False])
@pytest.mark.parametrize("band", [None, 4, 6], ids=["dense", "band4", "band6"])
def test_packed_segments_equal_separate_rows(scan, for_decoding, band):
    """K suffixes packed into one row with segment ids (after a shared prefix context) == the K suffixes
    as separate rows: same logits and keys/values at every real token, with either context key layout,
    with dense or banded attention among the packed tokens (band 4 = the longest suffix; suffixes
    straddle block boundaries)."""
    m = Decoder(CFG.replace(num_layers=3, scan_layers=scan), rngs=nnx.Rngs(4))
    rng = np.random.default_rng(5)
    prefixes = [list(rng.integers(0, 53, n)) for n in (6, 3)]
    suffixes = [[list(rng.integers(0, 53, n)) for n in lens] for lens in ((2, 4, 1), (3, 1, 3))]
    p_tok, p_pos = left_pad(prefixes)
    ctx = context_from_kv(m(jnp.asarray(p_tok), jnp.asarray(p_pos), return_kv=True).kv, jnp.asarray(p_pos),
                          for_decoding=for_decoding)
    width = 12  # packed row, right padded (the second user's 7 tokens leave five padding slots)
    tok = np.zeros((2, width), np.int32)
    pos = np.full((2, width), -1, np.int32)
    seg = np.full((2, width), -1, np.int32)
    where = []
    for u, (pfx, sfx) in enumerate(zip(prefixes, suffixes)):
        off = 0
        for c, s in enumerate(sfx):
            tok[u, off:off + len(s)] = s
            pos[u, off:off + len(s)] = len(pfx) + np.arange(len(s))
            seg[u, off:off + len(s)] = c
            where.append((u, off, len(s)))
            off += len(s)
    packed = m(jnp.asarray(tok), jnp.asarray(pos), context=ctx, segments=jnp.asarray(seg), logits_at="all",
               return_kv=True, segment_band=band)
    rows = [s for sfx in suffixes for s in sfx]
    r_tok = np.zeros((6, 4), np.int32)
    r_pos = np.full((6, 4), -1, np.int32)
    for r, s in enumerate(rows):
        r_tok[r, :len(s)] = s
        r_pos[r, :len(s)] = len(prefixes[r // 3]) + np.arange(len(s))
    sep = m(jnp.asarray(r_tok), jnp.asarray(r_pos), context=ctx, logits_at="all", return_kv=True)
    for r, (u, off, n) in enumerate(where):
        np.testing.assert_allclose(np.asarray(packed.logits)[u, off:off + n], np.asarray(sep.logits)[r, :n], atol=1e-5)
        for (pk, pv), (sk, sv) in zip(packed.kv, sep.kv):
            np.testing.assert_allclose(np.asarray(pk)[u, off:off + n], np.asarray(sk)[r, :n], atol=1e-5)
            np.testing.assert_allclose(np.asarray(pv)[u, off:off + n], np.asarray(sv)[r, :n], atol=1e-5)
    with pytest.raises(ValueError, match="segments"):
        m(jnp.asarray(tok), jnp.asarray(pos), segments=jnp.asarray(seg[:, :3]))
    with pytest.raises(ValueError, match="segment_band=5 .* divide the 12 tokens"):
        m(jnp.asarray(tok), jnp.asarray(pos), segments=jnp.asarray(seg), segment_band=5)
    with pytest.raises(ValueError, match="segment_band=4 needs segments"):
        m(jnp.asarray(tok), jnp.asarray(pos), segment_band=4)


# Each case compiles six forward+backward programs (~1 min on 2 busy cores): each block count once, and the scanned,
# rematerialized stack with a block count whose last block is shorter.
@pytest.mark.parametrize("blocks,scan,remat", [(2, False, "none"), (11, False, "none"), (3, True, "full")])
def test_causal_blocks_equal_dense_attention(blocks, scan, remat):
    """Blocked causal attention (each block of query rows against the keys up to its last slot) == dense
    attention at every real token, for the layouts training uses: left-padded prompts with right-padded
    responses, alone and after a shared prefix context, and packed segments; gradients too. 11 columns do
    not divide into 2 or 3 blocks (the last block is shorter); 11 blocks are single rows."""
    m = Decoder(CFG.replace(num_layers=2, scan_layers=scan, remat=remat), rngs=nnx.Rngs(6))
    rng = np.random.default_rng(7)
    width, prompt = 11, 6
    tok = rng.integers(0, 53, (3, width)).astype(np.int32)
    pos = np.full((3, width), -1, np.int32)
    for r, (p_len, r_len) in enumerate([(6, 5), (2, 3), (4, 1)]):   # prompt left-padded, response right-padded
        pos[r, prompt - p_len:prompt + r_len] = np.arange(p_len + r_len)
    real = pos >= 0
    graphdef, state = nnx.split(m)

    def run(state, causal_blocks, **kw):
        out = nnx.merge(graphdef, state)(jnp.asarray(tok), jnp.asarray(pos), logits_at="all", return_kv=True,
                                         causal_blocks=causal_blocks, **kw)
        loss = jnp.sum(jnp.where(jnp.asarray(real)[..., None], jax.nn.log_softmax(out.logits), 0.0))
        return loss, out

    # One compiled program per layout and block count, instead of op-by-op dispatch of the backward pass.
    value_and_grad = jax.jit(jax.value_and_grad(run, has_aux=True), static_argnums=1)

    def check(**kw):
        (l0, dense), g0 = value_and_grad(state, None, **kw)
        (l1, blocked), g1 = value_and_grad(state, blocks, **kw)
        np.testing.assert_allclose(np.asarray(blocked.logits)[real], np.asarray(dense.logits)[real], atol=1e-5)
        for (bk, bv), (dk, dv) in zip(blocked.kv, dense.kv):
            np.testing.assert_allclose(np.asarray(bk)[real], np.asarray(dk)[real], atol=1e-5)
            np.testing.assert_allclose(np.asarray(bv)[real], np.asarray(dv)[real], atol=1e-5)
        np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
            np.testing.assert_allclose(a, b, atol=1e-5)

    check()
    p_tok, p_pos = left_pad([list(rng.integers(0, 53, 5))])
    ctx = context_from_kv(m(jnp.asarray(p_tok), jnp.asarray(p_pos), return_kv=True).kv, jnp.asarray(p_pos))
    pos[real] += 5                                                     # the rows continue the shared prefix
    check(context=ctx)
    seg = np.where(real, np.arange(width) // prompt, -1).astype(np.int32)   # two packed segments per row
    for r in range(3):
        for c in (0, 1):
            here = seg[r] == c
            pos[r, here] = np.arange(here.sum())                     # each segment's positions start at 0
    check(segments=jnp.asarray(seg))


def test_causal_blocks_refuse_a_cache_or_a_band(model):
    tok, pos = left_pad([[1, 2, 3, 4]])
    seg = np.zeros_like(tok)
    with pytest.raises(ValueError, match="causal_blocks=2 .* without a cache or a segment_band"):
        model(jnp.asarray(tok), jnp.asarray(pos), segments=jnp.asarray(seg), segment_band=2, causal_blocks=2)
    cache = KVCache.init(CFG, batch=1, size=8)
    with pytest.raises(ValueError, match="causal_blocks=2"):
        model(jnp.asarray(tok), jnp.asarray(pos), cache=cache, causal_blocks=2)
    with pytest.raises(ValueError, match="causal_blocks=0"):
        model(jnp.asarray(tok), jnp.asarray(pos), causal_blocks=0)
