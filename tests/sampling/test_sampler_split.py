"""The decode split over several devices (sampling/split.py) against the one-device decode on tiny random
checkpoints: same tokens, log-probs and hidden states (float rounding), shared and plain prompts, whole and
partial users per device; no recompiles; clear errors for layouts it cannot split."""
import dataclasses

import jax
import numpy as np
import pytest
from hf_tiny import save_hf_model
from test_sampler_tiny import prompts

from r2rank_jax.mesh import MeshError
from r2rank_jax.models.config import LoRAConfig
from r2rank_jax.models.hf_port import load_hf
from r2rank_jax.models.lora import with_lora
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig, compile_count

CONFIG = SamplerConfig(max_new_tokens=10, eos_ids=(2,), buckets=(8, 16, 32))


def load(kind, tmp_path_factory):
    d = tmp_path_factory.mktemp(kind)
    save_hf_model(kind, d)
    return load_hf(d)


@pytest.fixture(scope="module", params=["qwen2_tied_gqa", "llama3_rope_scaling"])
def model(request, tmp_path_factory):
    return load(request.param, tmp_path_factory)


def split_sampler(model, n):
    return Sampler(model, dataclasses.replace(CONFIG, decode_devices=n))


def assert_same(split, one):
    np.testing.assert_array_equal(np.asarray(split.ids), np.asarray(one.ids))
    np.testing.assert_array_equal(np.asarray(split.valid), np.asarray(one.valid))
    np.testing.assert_array_equal(np.asarray(split.stopped), np.asarray(one.stopped))
    np.testing.assert_allclose(np.asarray(split.logprobs), np.asarray(one.logprobs), atol=1e-5)
    np.testing.assert_allclose(np.asarray(split.hidden), np.asarray(one.hidden), atol=1e-5)


# (devices, users, candidates): whole users per device, part of one user per device, one row per device.
@pytest.mark.parametrize("devices, users, k", [(2, 2, 4), (2, 4, 2), (4, 2, 4), (2, 1, 6), (8, 1, 8)])
@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.8, 0.9)])
def test_split_shared_prefix_equals_one_device(model, devices, users, k, temperature, top_p):
    vocab = model.config.vocab_size
    prefixes = prompts(vocab, [9, 4, 6, 3][:users], seed=2)
    suffixes = [prompts(vocab, [2, 5, 1, 3, 4, 2, 6, 1][:k], seed=3 + u) for u in range(users)]
    params = SamplingParams.make(users * k, temperature=temperature, top_p=top_p)
    one = Sampler(model, CONFIG).generate_shared(prefixes, suffixes, params, jax.random.key(5))
    split = split_sampler(model, devices).generate_shared(prefixes, suffixes, params, jax.random.key(5))
    assert_same(split, one)


def test_split_plain_prompts_equal_one_device(model):
    ps = prompts(model.config.vocab_size, (7, 3, 12, 5), seed=1)
    params = SamplingParams.make(4, temperature=1.0)
    assert_same(split_sampler(model, 2).generate(ps, params, jax.random.key(3)),
                Sampler(model, CONFIG).generate(ps, params, jax.random.key(3)))


def test_split_new_sampling_params_or_weights_do_not_recompile(model):
    sampler = split_sampler(model, 2)
    ps = prompts(model.config.vocab_size, (7, 3, 12, 5), seed=1)
    sampler.generate(ps, SamplingParams.make(4, temperature=1.0), jax.random.key(0))
    before = compile_count()
    sampler.generate(ps, SamplingParams.make(4, temperature=0.5, top_p=0.8), jax.random.key(1))
    scaled = jax.tree.map(lambda x: x * 1.01, sampler.state)
    out = sampler.generate(ps, SamplingParams.greedy(4), jax.random.key(2), state=scaled)
    assert compile_count() == before
    # The weights passed as `state=` are the ones used: equal to a one-device sampler given the same state.
    assert_same(out, Sampler(model, CONFIG).generate(ps, SamplingParams.greedy(4), jax.random.key(2), state=scaled))


def test_split_errors(model, tmp_path_factory):
    vocab = model.config.vocab_size
    with pytest.raises(ValueError, match="decode_devices must be >= 1"):
        SamplerConfig(decode_devices=0)
    with pytest.raises(MeshError, match=r"only \d+ local .*xla_force_host_platform_device_count=64"):
        split_sampler(model, 64)
    sampler = split_sampler(model, 2)
    greedy = SamplingParams.greedy
    with pytest.raises(ValueError, match="3 rows are not divisible by decode_devices=2"):
        sampler.generate_shared(prompts(vocab, (4,)), [prompts(vocab, (2, 3, 1))], greedy(3), jax.random.key(0))
    # 3 users x 2 candidates over 2 devices: 3 rows per device straddle users.
    with pytest.raises(ValueError, match="cover whole users or part of one user"):
        sampler.generate_shared(prompts(vocab, (4, 5, 3)), [prompts(vocab, (2, 3))] * 3, greedy(6), jax.random.key(0))
    # The odd vocabulary (97) of this checkpoint cannot be split in two.
    with pytest.raises(MeshError, match=r"dimension 0 \(size 97\) is not divisible"):
        split_sampler(load("llama_untied_mha", tmp_path_factory), 2)
    with pytest.raises(ValueError, match="does not support LoRA"):
        split_sampler(with_lora(model, LoRAConfig(rank=2, alpha=4.0)), 2)
