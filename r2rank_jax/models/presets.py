"""Architectures of the checkpoints the paper's configs name (values of their published config.json).

Used to build a model without weights (ahead-of-time memory planning on a simulated mesh) and to check
that a checkpoint directory given to a config is the architecture the config was sized for.
"""
from __future__ import annotations

from typing import Any

from r2rank_jax.models.config import ConfigError, ModelConfig

_QWEN2_5 = dict(vocab_size=151936, model_type="qwen2", rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=32768,
                attention_bias=True, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
                pad_token_id=151643, head_dim=128, num_kv_heads=2)

PRESETS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b-instruct": dict(_QWEN2_5, hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12),
    "qwen2.5-3b-instruct": dict(_QWEN2_5, hidden_size=2048, intermediate_size=11008, num_layers=36, num_heads=16),
    "smollm2-135m-instruct": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                                  num_heads=9, num_kv_heads=3, head_dim=64, model_type="llama", rms_norm_eps=1e-5,
                                  rope_theta=100000.0, max_position_embeddings=8192, attention_bias=False,
                                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2),
}

# Fields that define the weights' shapes and the forward function (token ids may differ between releases).
ARCHITECTURE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                       "head_dim", "model_type", "rope_theta", "attention_bias", "tie_word_embeddings")


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset (overrides: numerics such as compute_dtype, remat)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def check_matches_preset(cfg: ModelConfig, name: str, source: str) -> None:
    """Raises when a loaded checkpoint's architecture differs from the preset a config names."""
    want = preset_config(name)
    diff = {f: (getattr(cfg, f), getattr(want, f)) for f in ARCHITECTURE_FIELDS if getattr(cfg, f) != getattr(want, f)}
    if diff:
        detail = ", ".join(f"{f}={got!r} (preset {exp!r})" for f, (got, exp) in diff.items())
        raise ConfigError(f"{source}: checkpoint does not match model.preset={name!r}: {detail}")
