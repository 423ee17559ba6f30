"""Bad checkpoints and configs fail with errors that name the culprit."""
import json

import numpy as np
import pytest
from hf_tiny import save_hf_model
from safetensors.numpy import load_file, save_file

from r2rank_jax.models.config import ConfigError, ModelConfig, load_hf_config
from r2rank_jax.models.hf_port import load_hf
from r2rank_jax.models.safetensors_io import CheckpointError


@pytest.fixture()
def ckpt(tmp_path):
    save_hf_model("qwen2_tied_gqa", tmp_path)
    return tmp_path


def _edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_tensors(d, fn):
    t = load_file(d / "model.safetensors")
    fn(t)
    save_file(t, d / "model.safetensors")


def test_missing_config_field(ckpt):
    _edit_config(ckpt, num_hidden_layers=None)
    with pytest.raises(ConfigError, match=r"config.json: missing required field 'num_hidden_layers'"):
        load_hf(ckpt)


def test_unknown_config_field(ckpt):
    _edit_config(ckpt, use_magic_attention=True)
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['use_magic_attention'\]"):
        load_hf_config(ckpt)


def test_unsupported_architecture(ckpt):
    _edit_config(ckpt, model_type="mistral", architectures=["MistralForCausalLM"])
    with pytest.raises(ConfigError, match="unsupported architecture model_type='mistral'"):
        load_hf(ckpt)


def test_unsupported_semantics(ckpt):
    _edit_config(ckpt, use_sliding_window=True)
    with pytest.raises(ConfigError, match="use_sliding_window=True is not supported"):
        load_hf(ckpt)
    _edit_config(ckpt, use_sliding_window=False, rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0})
    with pytest.raises(ConfigError, match="rope_type='yarn' is not supported"):
        load_hf(ckpt)


def test_missing_tensor(ckpt):
    _edit_tensors(ckpt, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model.layers.1.mlp.up_proj.weight'"):
        load_hf(ckpt)


def test_wrong_shape(ckpt):
    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][:-1]
    _edit_tensors(ckpt, shrink)
    with pytest.raises(CheckpointError, match=r"'model.layers.0.self_attn.k_proj.weight' has shape \(15, 48\), expected \(16, 48\)"):
        load_hf(ckpt)


def test_unexpected_tensor_means_unsupported_variant(ckpt):
    _edit_tensors(ckpt, lambda t: t.__setitem__("model.layers.0.self_attn.o_proj.bias", np.zeros(48, np.float32)))
    with pytest.raises(CheckpointError, match="o_proj.bias"):
        load_hf(ckpt)


def test_corrupt_safetensors_file(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        load_hf(ckpt)


def test_missing_weights_file(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_hf(ckpt)


def test_config_overrides_reject_unknown_fields():
    cfg = ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=4)
    with pytest.raises(ConfigError, match=r"unknown ModelConfig field\(s\): \['hiden_size'\]"):
        cfg.replace(hiden_size=16)
    with pytest.raises(ConfigError, match="num_heads=3 is not a multiple of num_kv_heads=2"):
        cfg.replace(num_heads=3, num_kv_heads=2)
