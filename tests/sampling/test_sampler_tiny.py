"""The sampler on tiny random checkpoints: parity with transformers, log-probs and hidden states against a
teacher-forced pass, shared prefix == unshared, stops, bounds, no recompiles, clear errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_tiny import save_hf_model

from r2rank_jax.models.hf_port import load_hf
from r2rank_jax.sampling.params import SamplingParams
from r2rank_jax.sampling import sampler as sampler_module
from r2rank_jax.sampling.sampler import Sampler, SamplerConfig, compile_count
from r2rank_jax.sampling.stops import StopStrings

EOS = 2
N = 10
CONFIG = SamplerConfig(max_new_tokens=N, eos_ids=(EOS,), buckets=(8, 16, 32))


@pytest.fixture(scope="module", params=["qwen2_tied_gqa", "llama_untied_mha"])
def models(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    ref = save_hf_model(request.param, d)
    return load_hf(d), ref


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen2")
    save_hf_model("qwen2_tied_gqa", d)
    return load_hf(d)


def prompts(vocab, lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [list(map(int, rng.integers(3, vocab, n))) for n in lengths]


def rows(out, b):
    return np.asarray(out.ids[b])[np.asarray(out.valid[b])].tolist()


def teacher_forced(model, seqs):
    """(log-softmax logits `[B, T, V]`, hidden `[B, T, D]`) of right-padded sequences."""
    t = max(map(len, seqs))
    tokens = np.zeros((len(seqs), t), np.int32)
    positions = np.full((len(seqs), t), -1, np.int32)
    for b, s in enumerate(seqs):
        tokens[b, :len(s)] = s
        positions[b, :len(s)] = np.arange(len(s))
    out = model(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all")
    return np.asarray(out.logits), np.asarray(out.hidden)


def test_greedy_equals_transformers_generate(models):
    ours, ref = models
    ps = prompts(ours.config.vocab_size, (7, 3, 12, 5))
    out = Sampler(ours, CONFIG).generate(ps, SamplingParams.greedy(len(ps)), jax.random.key(0))
    for b, p in enumerate(ps):
        with torch.no_grad():
            expect = ref.generate(torch.tensor([p]), max_new_tokens=N, do_sample=False, eos_token_id=EOS,
                                  pad_token_id=0)[0, len(p):].tolist()
        assert rows(out, b) == expect
        assert bool(out.stopped[b]) == (EOS in expect)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_hidden_equal_teacher_forcing(model, temperature):
    ps = prompts(model.config.vocab_size, (7, 3, 12, 5), seed=1)
    params = SamplingParams.make(len(ps), temperature=temperature)
    out = Sampler(model, CONFIG).generate(ps, params, jax.random.key(3))
    seqs = [p + rows(out, b) for b, p in enumerate(ps)]
    logits, hidden = teacher_forced(model, seqs)
    for b, p in enumerate(ps):
        gen = rows(out, b)
        idx = len(p) - 1 + np.arange(len(gen))  # the position predicting each generated token
        expect = jax.nn.log_softmax(jnp.asarray(logits[b, idx]) / temperature)[np.arange(len(gen)), gen]
        np.testing.assert_allclose(np.asarray(out.logprobs[b, :len(gen)]), np.asarray(expect), atol=1e-4)
        assert np.all(np.asarray(out.logprobs[b, len(gen):]) == 0)
        np.testing.assert_allclose(np.asarray(out.hidden[b]), hidden[b, len(seqs[b]) - 1], atol=1e-4)
    assert np.array_equal(np.asarray(out.lengths), [len(rows(out, b)) for b in range(len(ps))])


@pytest.mark.parametrize("pack", [True, False], ids=["packed_suffixes", "padded_suffixes"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefix_equals_unshared(model, temperature, pack, monkeypatch):
    vocab = model.config.vocab_size
    prefixes = prompts(vocab, (9, 4), seed=2)
    suffixes = [prompts(vocab, (2, 5, 1), seed=3), prompts(vocab, (3, 1, 4), seed=4)]
    params = SamplingParams.make(6, temperature=temperature)
    sampler = Sampler(model, dataclasses.replace(CONFIG, pack_suffixes=pack))
    calls = []
    packed_prefill = sampler_module._prefill_packed
    monkeypatch.setattr(sampler_module, "_prefill_packed", lambda *a, **kw: calls.append(1) or packed_prefill(*a, **kw))
    shared = sampler.generate_shared(prefixes, suffixes, params, jax.random.key(5))
    assert len(calls) == int(pack)  # 8 packed slots < 3 rows x 8 padded ones: packing is chosen
    full = [p + s for p, sfx in zip(prefixes, suffixes) for s in sfx]
    plain = sampler.generate(full, params, jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(shared.ids), np.asarray(plain.ids))
    np.testing.assert_array_equal(np.asarray(shared.valid), np.asarray(plain.valid))
    np.testing.assert_allclose(np.asarray(shared.logprobs), np.asarray(plain.logprobs), atol=1e-5)
    np.testing.assert_allclose(np.asarray(shared.hidden), np.asarray(plain.hidden), atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_banded_packed_prefill_equals_unshared(model, temperature, monkeypatch):
    """Eight suffixes per user: the packed row (32 slots) is banded in blocks of 8 (the suffix bucket),
    and generation still equals the unshared prompts'."""
    vocab = model.config.vocab_size
    prefixes = prompts(vocab, (9, 4), seed=12)
    suffixes = [prompts(vocab, (2, 5, 1, 3, 4, 1, 2, 3), seed=13), prompts(vocab, (3, 1, 4, 5, 2, 2, 1, 4), seed=14)]
    params = SamplingParams.make(16, temperature=temperature)
    sampler = Sampler(model, CONFIG)
    bands = []
    packed_prefill = sampler_module._prefill_packed
    monkeypatch.setattr(sampler_module, "_prefill_packed",
                        lambda *a, **kw: bands.append(kw["band"]) or packed_prefill(*a, **kw))
    shared = sampler.generate_shared(prefixes, suffixes, params, jax.random.key(7))
    assert bands == [8]
    full = [p + s for p, sfx in zip(prefixes, suffixes) for s in sfx]
    plain = sampler.generate(full, params, jax.random.key(7))
    np.testing.assert_array_equal(np.asarray(shared.ids), np.asarray(plain.ids))
    np.testing.assert_allclose(np.asarray(shared.logprobs), np.asarray(plain.logprobs), atol=1e-5)
    np.testing.assert_allclose(np.asarray(shared.hidden), np.asarray(plain.hidden), atol=1e-5)


def test_host_blocks_with_rows_equal_the_whole_batch(model):
    """Sampling (temperature 1) 4 users as two blocks of 2 with rows=(total, first), as two hosts do,
    gives the rows of one call on all 4; the second block without rows= draws other numbers."""
    vocab = model.config.vocab_size
    prefixes = prompts(vocab, (9, 4, 20, 3), seed=21)       # the second block's prefixes need a larger bucket
    suffixes = [prompts(vocab, (2, 5, 1), seed=22 + u) for u in range(4)]
    sampler = Sampler(model, CONFIG)
    whole = sampler.generate_shared(prefixes, suffixes, SamplingParams.make(12, temperature=1.0), jax.random.key(3))
    params = SamplingParams.make(6, temperature=1.0)
    blocks = [sampler.generate_shared(prefixes[2 * i:2 * i + 2], suffixes[2 * i:2 * i + 2], params, jax.random.key(3),
                                      rows=(12, 6 * i)) for i in range(2)]
    for field in ("ids", "valid", "lengths"):
        np.testing.assert_array_equal(np.concatenate([np.asarray(getattr(b, field)) for b in blocks]),
                                      np.asarray(getattr(whole, field)), err_msg=field)
    for field in ("logprobs", "hidden"):
        np.testing.assert_allclose(np.concatenate([np.asarray(getattr(b, field)) for b in blocks]),
                                   np.asarray(getattr(whole, field)), atol=1e-5, err_msg=field)
    alone = sampler.generate_shared(prefixes[2:], suffixes[2:], params, jax.random.key(3))
    assert not np.array_equal(np.asarray(alone.ids), np.asarray(whole.ids)[6:])
    with pytest.raises(ValueError, match="do not fit a batch of 8"):
        sampler.generate_shared(prefixes[2:], suffixes[2:], params, jax.random.key(3), rows=(8, 4))


def test_segment_band_choice():
    assert sampler_module.segment_band(48, 512) == 64     # smallest divisor of 512 holding a 48-token suffix
    assert sampler_module.segment_band(48, 480) == 48
    assert sampler_module.segment_band(48, 160) is None   # 80-token blocks: 160 x 160 logits, no saving
    assert sampler_module.segment_band(8, 31) is None     # prime length: the only divisor is the row


def test_stop_string_eos_and_max_new_tokens(model):
    vocab = model.config.vocab_size
    ps = prompts(vocab, (7, 3, 12), seed=6)
    free = Sampler(model, SamplerConfig(max_new_tokens=N, buckets=(16,))).generate(ps, SamplingParams.greedy(3), jax.random.key(0))
    assert np.all(np.asarray(free.valid)) and not np.any(np.asarray(free.stopped))
    gen0 = rows(free, 0)
    # Token i reads as a two-letter text; the stop string spans the end of token 3 and all of token 4.
    texts = [f"{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}" for i in range(vocab)]
    stop = texts[gen0[3]][1:] + texts[gen0[4]]
    stops = StopStrings.from_token_texts([stop], texts)
    cfg = SamplerConfig(max_new_tokens=N, buckets=(16,), pad_id=0)
    out = Sampler(model, cfg, stops).generate(ps, SamplingParams.greedy(3), jax.random.key(0))
    for b in range(3):  # every row stops exactly where the stop string first appears in its text
        text = "".join(texts[t] for t in rows(free, b))
        end = text.find(stop)
        expect_len = N if end < 0 else (end + len(stop) + 1) // 2
        assert rows(out, b) == rows(free, b)[:expect_len]
        assert bool(out.stopped[b]) == (end >= 0)
        assert np.all(np.asarray(out.ids[b, expect_len:]) == 0)
    assert bool(out.stopped[0]) and len(rows(out, 0)) <= 5
    eos = gen0[2]
    out = Sampler(model, SamplerConfig(max_new_tokens=N, eos_ids=(eos,), buckets=(16,))).generate(
        ps, SamplingParams.greedy(3), jax.random.key(0))
    assert rows(out, 0) == gen0[:gen0.index(eos) + 1]


def test_changing_sampling_params_does_not_recompile(model):
    sampler = Sampler(model, CONFIG)
    ps = prompts(model.config.vocab_size, (7, 3, 12, 5), seed=7)
    sampler.generate(ps, SamplingParams.make(4, temperature=1.0), jax.random.key(0))
    before = compile_count()
    for kw in (dict(temperature=0.3), dict(temperature=1.0, top_p=0.8), dict(top_k=5, top_p=0.5),
               dict(temperature=[0.0, 1.0, 0.5, 2.0], top_k=[0, 3, 1, 0])):
        out = sampler.generate(ps, SamplingParams.make(4, **kw), jax.random.key(1))
    jax.block_until_ready(out)
    # New weights of the same shapes do not recompile either.
    state = jax.tree_util.tree_map(lambda x: x * 1.01, sampler.state)
    jax.block_until_ready(sampler.generate(ps, SamplingParams.make(4), jax.random.key(2), state=state))
    assert compile_count() == before


def test_prompt_errors(model):
    sampler = Sampler(model, CONFIG)
    params = SamplingParams.greedy(2)
    with pytest.raises(ValueError, match="exceeds the largest bucket 32"):
        sampler.generate([[3] * 33, [4]], params, jax.random.key(0))
    with pytest.raises(ValueError, match="empty prompt"):
        sampler.generate([[3, 4], []], params, jax.random.key(0))
    with pytest.raises(ValueError, match="empty prefix"):
        sampler.generate_shared([[3], []], [[[4]], [[5]]], params, jax.random.key(0))
    with pytest.raises(ValueError, match="suffix of 40 tokens exceeds"):
        sampler.generate_shared([[3], [4]], [[[4] * 40], [[5]]], params, jax.random.key(0))
    with pytest.raises(ValueError, match="empty prompt"):
        sampler.prefill(np.zeros((2, 4), np.int32), np.array([[-1] * 4, [0, 1, 2, 3]], np.int32))
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        sampler.generate([[3], [4], [5]], params, jax.random.key(0))
