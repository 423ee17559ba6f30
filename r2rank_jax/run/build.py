"""Tokenizer and model construction from an ExperimentConfig (shared by the SFT, RL and eval stages)."""
from __future__ import annotations

from typing import Any

from flax import nnx

from r2rank_jax.config import ExperimentConfig
from r2rank_jax.run.workdir import Workdir


def load_tokenizer(cfg: ExperimentConfig, wd: Workdir, stage: str = "build") -> Any:
    from transformers import AutoTokenizer

    if cfg.tokenizer == "synthetic":
        return AutoTokenizer.from_pretrained(str(wd.require(wd.tokenizer, stage, "prepare")))
    if cfg.tokenizer:
        return AutoTokenizer.from_pretrained(cfg.tokenizer)
    m = cfg.model
    if m.kind == "hf":
        return AutoTokenizer.from_pretrained(m.path)
    if m.kind in ("gguf", "smollm2"):
        from r2rank_jax.models.gguf import load_gguf_tokenizer, smollm2_gguf_path

        return load_gguf_tokenizer(m.path or smollm2_gguf_path())
    raise ValueError(f"model.kind={m.kind!r} needs a tokenizer: set tokenizer='synthetic' or a path")


def build_model(cfg: ExperimentConfig, tokenizer: Any, mesh=None):
    """(decoder, scoring head). A "random" decoder's vocabulary is the tokenizer's. With `model.lora.rank > 0`
    the decoder gets fresh LoRA adapters (A random, B zero) on top of the base weights."""
    from r2rank_jax.models.config import LoRAConfig, ModelConfig
    from r2rank_jax.models.decoder import Decoder
    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.models.lora import with_lora

    m = cfg.model
    numerics = dict(param_dtype=m.param_dtype, compute_dtype=m.dtype, remat=m.remat, scan_layers=m.scan_layers)
    if m.kind == "random":
        mc = ModelConfig(vocab_size=len(tokenizer), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                         num_layers=m.num_layers, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
                         head_dim=m.head_dim, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **numerics)
        model = Decoder(mc, rngs=nnx.Rngs(cfg.seed))
    elif m.kind == "hf":
        from r2rank_jax.models.hf_port import load_hf

        model = load_hf(m.path, mesh=mesh, **numerics)
    elif m.kind in ("gguf", "smollm2"):
        from r2rank_jax.models.gguf import load_gguf, smollm2_gguf_path

        model = load_gguf(m.path or smollm2_gguf_path(), mesh=mesh, **numerics)
    else:
        raise ValueError(f"model.kind={m.kind!r}: expected 'random', 'hf', 'gguf' or 'smollm2'")
    model = with_lora(model, LoRAConfig(rank=m.lora.rank, alpha=m.lora.alpha, targets=m.lora.targets),
                      seed=cfg.seed + 2, mesh=mesh)
    if m.preset and m.kind != "random":
        from r2rank_jax.models.presets import check_matches_preset

        check_matches_preset(model.config, m.preset, m.path or m.kind)
    head = ScoringHead(model.config.hidden_size, m.head_hidden, rngs=nnx.Rngs(cfg.seed + 1))
    return model, head
