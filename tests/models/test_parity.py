"""Our decoder against transformers on tiny random Qwen2/Llama checkpoints (float32)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_tiny import VARIANTS, padded_batch, save_hf_model

from r2rank_jax.models.gguf import reference_logits
from r2rank_jax.models.hf_port import load_hf


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ref = save_hf_model(request.param, d)
    return ref, load_hf(d), d


def test_logits_and_hidden_match_transformers_with_left_padding(pair):
    ref, ours, _ = pair
    tokens, positions, mask = padded_batch(ours.config.vocab_size)
    ref_logits, ref_hidden = reference_logits(ref, tokens.astype(np.int64), mask, positions.astype(np.int64))
    out = ours(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all")
    real = mask.astype(bool)
    assert np.abs(np.asarray(out.logits) - ref_logits)[real].max() <= 1e-4
    assert np.abs(np.asarray(out.hidden) - ref_hidden)[real].max() <= 1e-4
    assert (np.asarray(out.logits).argmax(-1) == ref_logits.argmax(-1))[real].all()


def test_logits_only_at_requested_positions(pair):
    _, ours, _ = pair
    tokens, positions, _ = padded_batch(ours.config.vocab_size)
    full = ours(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all")
    idx = jnp.asarray([[10, 3], [10, 9], [7, 10]])
    part = ours(jnp.asarray(tokens), jnp.asarray(positions), logits_at=idx)
    assert part.logits.shape == (3, 2, ours.config.vocab_size)
    np.testing.assert_allclose(part.logits, jnp.take_along_axis(full.logits, idx[..., None], axis=1), atol=1e-6)
    assert ours(jnp.asarray(tokens), jnp.asarray(positions)).logits is None


def test_loaded_config_follows_checkpoint(pair):
    ref, ours, _ = pair
    c = ref.config
    assert ours.config.num_kv_heads == c.num_key_value_heads
    assert ours.config.attention_bias == (c.model_type == "qwen2")
    assert ours.config.tie_word_embeddings == c.tie_word_embeddings
    assert ours.config.rope_theta == c.rope_parameters["rope_theta"]
