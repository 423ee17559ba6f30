"""Greedy decoding with SmolLM2-135M-Instruct real weights (fp32) equals transformers' greedy generate,
token for token, on real R2Rank prompts, through the plain and the shared-prefix paths and the decode
split over two devices."""
import jax
import numpy as np
import pytest
import torch

from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig

pytestmark = pytest.mark.slow
N = 32


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.gguf import load_gguf_reference, load_gguf_tokenizer, source_from_torch
    from r2rank_jax.models.hf_port import load_from_source

    ref = load_gguf_reference(smollm2_path)
    hf_config, source = source_from_torch(ref)
    ours = load_from_source(ModelConfig.from_hf_dict(hf_config, source=str(smollm2_path)), source, None, origin=str(smollm2_path))
    return ours, ref, load_gguf_tokenizer(smollm2_path)


def test_greedy_equals_transformers_on_real_prompts(smollm2, shared_data_dir):
    from r2rank_jax.bench.rollout import games_prompts

    ours, ref, tokenizer = smollm2
    (prefix, suffixes), = games_prompts(tokenizer, shared_data_dir / "amazon18_video_games", users=1, k=4,
                                        history=20, seed=0)
    full = [prefix + s for s in suffixes]
    assert all(len(p) > 250 for p in full)
    expect = []
    with torch.no_grad():
        for p in full:
            out = ref.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                               max_new_tokens=N, do_sample=False, eos_token_id=None, pad_token_id=0)
            expect.append(out[0, len(p):].tolist())
    sampler = Sampler(ours, SamplerConfig(max_new_tokens=N, eos_ids=(), pad_id=0))
    plain = sampler.generate(full, SamplingParams.greedy(4), jax.random.key(0))
    shared = sampler.generate_shared([prefix], [suffixes], SamplingParams.greedy(4), jax.random.key(0))
    # The decode split over 2 devices (sampling/split.py), as the rollout benchmark runs it on CPU.
    split = Sampler(ours, SamplerConfig(max_new_tokens=N, eos_ids=(), pad_id=0, decode_devices=2)).generate_shared(
        [prefix], [suffixes], SamplingParams.greedy(4), jax.random.key(0))
    for b in range(4):
        assert np.asarray(plain.ids[b]).tolist() == expect[b], b
        assert np.asarray(shared.ids[b]).tolist() == expect[b], b
        assert np.asarray(split.ids[b]).tolist() == expect[b], b
    np.testing.assert_allclose(np.asarray(shared.logprobs), np.asarray(plain.logprobs), atol=1e-4)
    np.testing.assert_allclose(np.asarray(split.logprobs), np.asarray(plain.logprobs), atol=1e-4)
