"""LoRA: adapters leave an untrained model unchanged; SFT and RL steps update only adapters and head
(no gradients or optimizer state for the frozen base); checkpoints round-trip the adapters; the merged
HF export reproduces the unmerged model; LoRA off changes nothing."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from r2rank_jax.config import R2EC_LORA, ExperimentConfig, ModelSpec
from r2rank_jax.mesh import make_mesh, param_shardings, path_str
from r2rank_jax.models.config import LoRAConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.models.hf_port import hf_name, load_hf
from r2rank_jax.models.lora import LoRAParam, merge_lora, with_lora
from r2rank_jax.run.build import build_model
from r2rank_jax.tools import export_checkpoint
from r2rank_jax.train import sft_data
from r2rank_jax.train.checkpoint import CheckpointConfig, Checkpointer, abstract_like, train_metadata
from r2rank_jax.train.optim import OptimConfig, make_optimizer
from r2rank_jax.train.rl import RLConfig, make_train_step
from r2rank_jax.train.sft import SFTConfig, make_sft_step, put_batch
from r2rank_jax.train.state import create_train_state
from rl_fixtures import TINY, make_batch, tiny_models
from sft_fixtures import random_examples

LORA = LoRAConfig(rank=4, alpha=8.0)
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, TINY.vocab_size, (2, 9)), jnp.int32)
POSITIONS = jnp.broadcast_to(jnp.arange(9), (2, 9))


def _flat(tree) -> dict[str, np.ndarray]:
    return {path_str(p): np.array(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _lora_state(mesh=None):
    model, head = tiny_models(0)
    tx = make_optimizer(OptimConfig(learning_rate=2e-2))
    return create_train_state(with_lora(model, LORA, seed=5, mesh=mesh), head, tx, tx, jax.random.PRNGKey(0), mesh)


@functools.cache
def _sft_step():
    """One jitted SFT step for all tests (every `_lora_state()` has the same structure and optimizer)."""
    return make_sft_step(_lora_state()[0], SFTConfig())


def _sft_batch(seed=0):
    return put_batch(sft_data.Collate(8, (8, 16), (4, 8), pad_id=0)(random_examples(8, seed=seed)))


def _assert_only_adapters_and_head_changed(before, after):
    llm0, llm1 = _flat(before.llm), _flat(after.llm)
    assert llm0.keys() == llm1.keys()
    changed = {k for k in llm0 if not np.array_equal(llm0[k], llm1[k])}
    assert changed and all("_lora/" in k for k in changed), sorted(changed)
    # Every B moved (its first gradient is non-zero); base weights are bitwise equal.
    assert {k for k in llm0 if k.endswith("_lora/b")} <= changed
    for k in llm0:
        if "_lora/" not in k:
            np.testing.assert_array_equal(llm0[k], llm1[k], err_msg=k)
    return changed


def test_lora_off_is_todays_model_and_state():
    model, head = tiny_models(0)
    paths = set(_flat(nnx.state(model)))
    for p in paths:
        hf_name(p)  # every parameter is a HF tensor: no adapter paths
    c = TINY
    qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim                 # q, k, v output widths
    per_layer = (c.hidden_size * qkv + qkv + c.num_heads * c.head_dim * c.hidden_size  # kernels, biases, o
                 + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size)       # MLP, two norms
    expected = c.num_layers * per_layer + 2 * c.vocab_size * c.hidden_size + c.hidden_size
    assert sum(x.size for x in _flat(nnx.state(model)).values()) == expected
    assert with_lora(model, LoRAConfig()) is model
    assert set(_flat(nnx.state(Decoder(TINY.replace(lora=LoRAConfig(rank=0, alpha=3.0)), rngs=nnx.Rngs(0))))) == paths
    tx = make_optimizer(OptimConfig())
    static, state = create_train_state(model, head, tx, tx, jax.random.PRNGKey(0))
    assert static.llm_trainable is None
    assert jax.tree.structure(state.llm_opt) == jax.tree.structure(tx.init(state.llm))
    assert "lora" not in train_metadata(TINY, head)["model_config"]  # checkpoint metadata as before


def test_untrained_adapters_leave_the_model_unchanged_and_only_they_get_optimizer_state():
    model, _ = tiny_models(0)
    adapted = with_lora(model, LORA, seed=5)
    np.testing.assert_array_equal(adapted(TOKENS, POSITIONS, logits_at="all").logits,
                                  model(TOKENS, POSITIONS, logits_at="all").logits)
    adapters = _flat(nnx.state(adapted, LoRAParam))
    d, f, h, hkv, hd = TINY.hidden_size, TINY.intermediate_size, TINY.num_heads, TINY.num_kv_heads, TINY.head_dim
    assert adapters["layers/0/attn/q_lora/a"].shape == (d, 4) and adapters["layers/0/attn/q_lora/b"].shape == (4, h, hd)
    assert adapters["layers/1/attn/k_lora/b"].shape == (4, hkv, hd)
    assert adapters["layers/0/attn/o_lora/a"].shape == (h, hd, 4)
    assert adapters["layers/0/mlp/down_lora/a"].shape == (f, 4)
    assert len(adapters) == TINY.num_layers * 7 * 2
    assert all(not x.any() for k, x in adapters.items() if k.endswith("/b"))
    a = adapters["layers/0/mlp/gate_lora/a"]
    assert 0.5 < a.std() * math.sqrt(3 * d) < 1.5  # PEFT's default variance 1 / (3 fan_in)

    _, state = _lora_state()
    n_adapter = sum(x.size for x in adapters.values())
    opt_sizes = [x.size for x in jax.tree.leaves(state.llm_opt)]
    assert sum(opt_sizes) - sum(s for s in opt_sizes if s == 1) == 2 * n_adapter  # Adam's mu and nu only


def test_sft_step_updates_only_adapters():
    _, state = _lora_state()
    before = jax.tree.map(np.array, state)
    step = _sft_step()
    state, m1 = step(state, _sft_batch(0))
    state, m2 = step(state, _sft_batch(1))
    assert int(m1["skipped"]) == int(m2["skipped"]) == 0 and float(m1["grad_norm"]) > 0
    changed = _assert_only_adapters_and_head_changed(before, state)
    assert any(k.endswith("/a") for k in changed)  # A moves from the second step on (its gradient needs B != 0)
    for k, x in _flat(state.head).items():          # SFT passes the head through
        np.testing.assert_array_equal(x, _flat(before.head)[k])


def test_rl_step_updates_only_adapters_and_head():
    cfg = RLConfig(num_rankings=2, baseline="mean", advantage="item")
    static, state = _lora_state()
    before = jax.tree.map(np.array, state)
    step = make_train_step(static, cfg)
    for i in range(2):
        state, metrics = step(state, make_batch(i, users=2, k=5))
        assert int(metrics["skipped"]) == 0
    _assert_only_adapters_and_head_changed(before, state)
    h0, h1 = _flat(before.head), _flat(state.head)
    assert any(not np.array_equal(h0[k], h1[k]) for k in h0)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 simulated devices")
def test_adapters_shard_by_the_partition_rules_at_paper_scale():
    """Qwen2.5-1.5B shapes (12 heads, 2 KV heads) on fsdp:4 x tensor:2: every adapter has a rule that
    divides it and shards it like its kernel (checked abstractly: nothing is allocated)."""
    from r2rank_jax.models.config import ModelConfig

    cfg = ModelConfig(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=1, num_heads=12,
                      num_kv_heads=2, head_dim=128, lora=LoRAConfig(rank=4, alpha=128.0))
    adapters = nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))), LoRAParam)
    specs = {k: tuple(s.spec) for k, s in _flat_specs(param_shardings(adapters, make_mesh("fsdp:4,tensor:2"))).items()}
    assert specs["layers/0/attn/q_lora/a"] == ("fsdp", None)
    assert specs["layers/0/attn/k_lora/b"] == (None, "tensor", None)
    assert specs["layers/0/attn/o_lora/a"] == ("tensor", None, None)
    assert specs["layers/0/mlp/up_lora/b"] == (None, "tensor")
    assert specs["layers/0/mlp/down_lora/a"] == ("tensor", None) and specs["layers/0/mlp/down_lora/b"] == (None, "fsdp")
    assert len(specs) == 14


def _flat_specs(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "spec"))[0]
    return {path_str(p): x for p, x in leaves}


def test_checkpoint_round_trip_and_merged_export_match_the_unmerged_model(tmp_path):
    static, state = _lora_state()
    step = _sft_step()
    for i in range(3):
        state, _ = step(state, _sft_batch(i))
    model = nnx.merge(static.llm_def, state.llm)
    head = nnx.merge(static.head_def, state.head)
    b = np.asarray(model.layers[1].mlp.down_lora.b[...])
    assert np.abs(b).max() > 1e-2  # trained adapters: the merge has something to fold in
    meta = train_metadata(model.config, head)
    assert meta["model_config"]["lora"] == {"rank": 4, "alpha": 8.0, "targets": list(LORA.targets)}
    ckpt_dir = tmp_path / "ckpt"
    with Checkpointer(CheckpointConfig(str(ckpt_dir)), meta) as ckpt:
        ckpt.save(3, state)
        restored = ckpt.restore(abstract_like(_lora_state()[1]))
    for k, x in _flat(state).items():
        np.testing.assert_array_equal(_flat(restored)[k], x, err_msg=k)

    want = np.asarray(model(TOKENS, POSITIONS, logits_at="all").logits)
    delta = np.abs(want - np.asarray(merge_lora(nnx.merge(static.llm_def, state.llm))(TOKENS, POSITIONS,
                                                                                        logits_at="all").logits))
    assert delta.max() <= 1e-5
    assert export_checkpoint.main(["--checkpoint", str(ckpt_dir), "--out", str(tmp_path / "hf")]) == 0
    exported = load_hf(tmp_path / "hf")
    assert exported.config.lora == LoRAConfig() and not nnx.state(exported, LoRAParam)
    got = np.asarray(exported(TOKENS, POSITIONS, logits_at="all").logits)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    base = np.asarray(tiny_models(0)[0](TOKENS, POSITIONS, logits_at="all").logits)
    assert np.abs(base - want).max() > 1e-3  # the adapters changed the function, and the export kept that


def test_experiment_config_builds_adapters_on_the_same_base():
    class Tok:
        eos_token_id, pad_token_id = 2, 0

        def __len__(self):
            return 48

    spec = ModelSpec(hidden_size=32, intermediate_size=48, num_layers=1, num_heads=4, num_kv_heads=2, head_dim=8,
                     head_hidden=8)
    plain, _ = build_model(ExperimentConfig(model=spec), Tok())
    lora, _ = build_model(ExperimentConfig(model=ModelSpec(**{**spec.__dict__, "lora": R2EC_LORA})), Tok())
    assert lora.config.lora == LoRAConfig(rank=4, alpha=128.0) and lora.config.lora.scale == 32.0
    base = _flat(nnx.state(lora, nnx.Not(LoRAParam)))
    assert base.keys() == _flat(nnx.state(plain)).keys()
    for k, x in _flat(nnx.state(plain)).items():
        np.testing.assert_array_equal(base[k], x, err_msg=k)
