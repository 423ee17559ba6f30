"""Greedy decoding equals transformers' greedy generate (tiny random models: token for token)."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_tiny import save_hf_model

from r2rank_jax.models.batching import left_pad
from r2rank_jax.models.hf_port import load_hf
from r2rank_jax.sampling.greedy import greedy_generate


@pytest.mark.parametrize("variant", ["qwen2_tied_gqa", "llama_untied_mha"])
def test_greedy_equals_transformers_generate(tmp_path, variant):
    ref = save_hf_model(variant, tmp_path)
    ours = load_hf(tmp_path)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(3, ours.config.vocab_size, n)) for n in (7, 3, 5)]
    tokens, positions = left_pad(prompts)
    eos = 2
    ids, valid = greedy_generate(ours, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray([eos]), max_new_tokens=12)
    for b, p in enumerate(prompts):
        with torch.no_grad():
            out = ref.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
        expect = out[0, len(p):].tolist()
        got = np.asarray(ids[b])[np.asarray(valid[b])].tolist()
        assert got == expect
