"""HF → ours → HF round trip, sharded checkpoints, and the convert / check_port tools."""
import json

import numpy as np
import pytest
import torch
from hf_tiny import padded_batch, save_hf_model
from safetensors.numpy import load_file

from r2rank_jax.models.gguf import reference_logits
from r2rank_jax.models.hf_port import export_hf, load_hf
from r2rank_jax.tools import check_port, convert


@pytest.mark.parametrize("variant", ["qwen2_tied_gqa", "llama_untied_mha"])
def test_export_round_trip_is_bitwise_and_loads_in_transformers(tmp_path, variant):
    from transformers import AutoModelForCausalLM

    src = tmp_path / "src"
    save_hf_model(variant, src)
    out = export_hf(load_hf(src), tmp_path / "out")
    a, b = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    a.pop("lm_head.weight", None) if "lm_head.weight" not in b else None
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    original = AutoModelForCausalLM.from_pretrained(src).eval()
    tokens, positions, mask = padded_batch(reloaded.config.vocab_size)
    x = reference_logits(reloaded, tokens.astype(np.int64), mask, positions.astype(np.int64))[0]
    y = reference_logits(original, tokens.astype(np.int64), mask, positions.astype(np.int64))[0]
    assert np.array_equal(x, y)


def test_sharded_export_and_load(tmp_path):
    src = tmp_path / "src"
    save_hf_model("qwen2_tied_gqa", src)
    model = load_hf(src)
    out = export_hf(model, tmp_path / "sharded", max_shard_bytes=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    again = load_hf(out)
    tokens, positions, _ = padded_batch(model.config.vocab_size)
    np.testing.assert_array_equal(model(tokens, positions, logits_at="all").logits,
                                  again(tokens, positions, logits_at="all").logits)


def test_bfloat16_checkpoint_round_trip(tmp_path):
    import ml_dtypes

    src = tmp_path / "src"
    save_hf_model("qwen2_tied_gqa", src)
    bf = export_hf(load_hf(src), tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((bf / "config.json").read_text())["torch_dtype"] == "bfloat16"
    model = load_hf(bf, param_dtype="bfloat16")
    again = export_hf(model, tmp_path / "bf16b")
    from r2rank_jax.models.safetensors_io import SafetensorsCheckpoint
    a, b = SafetensorsCheckpoint(bf), SafetensorsCheckpoint(again)
    for name in a.keys():
        assert a.array(name).dtype == ml_dtypes.bfloat16
        assert np.array_equal(a.array(name).view(np.uint16), b.array(name).view(np.uint16)), name


def test_check_port_tool_prints_json_and_fails_on_tolerance(tmp_path, capsys):
    src = tmp_path / "src"
    save_hf_model("llama_untied_mha", src)
    assert check_port.main(["--hf_dir", str(src)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["max_abs_logit_diff"] <= 1e-4 and report["argmax_agreement"] == 1.0
    assert {"max_abs_hidden_diff", "tokens_compared"} <= set(report)
    assert check_port.main(["--hf_dir", str(src), "--tol", "0"]) == 1


def test_convert_tool_writes_a_loadable_directory(tmp_path):
    src = tmp_path / "src"
    save_hf_model("qwen2_linear_rope", src)
    assert convert.main(["--in", str(src), "--out", str(tmp_path / "conv")]) == 0
    a, b = load_file(src / "model.safetensors"), load_file(tmp_path / "conv" / "model.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)
