"""Decoder configuration, read from (and written back to) a Hugging Face `config.json`.

One decoder serves the Qwen2 and Llama families: Qwen2 is Llama with q/k/v biases. Every field of a
checkpoint config is either used, known to be harmless, or rejected with an error that names it, so a
checkpoint whose semantics we do not implement (sliding windows, MLP biases, YaRN, ...) never loads
silently wrong.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
DTYPES = ("float32", "bfloat16", "float16")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")

# Fields of a HF config.json that carry no semantics for inference/training of this decoder.
_HARMLESS_HF_KEYS = frozenset({
    "architectures", "transformers_version", "torch_dtype", "dtype", "use_cache", "initializer_range",
    "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
    "max_window_layers", "layer_types", "pretraining_tp", "_name_or_path", "_model_name_or_path",
    "quantization_config", "output_attentions", "output_hidden_states", "return_dict", "sliding_window",
    "use_return_dict", "generation_config", "chunk_size_feed_forward", "is_encoder_decoder",
    "tokenizer_class", "id2label", "label2id", "problem_type", "finetuning_task", "prefix",
    "task_specific_params", "model_name", "torchscript", "use_bfloat16", "tf_legacy_loss",
    "pruned_heads", "cross_attention_hidden_size", "add_cross_attention", "is_decoder",
    "bad_words_ids", "decoder_start_token_id", "sep_token_id", "tie_encoder_decoder",
})
# Fields that change the computation: accepted only at the value we implement.
_REQUIRED_VALUES = {
    "hidden_act": ("silu",),
    "mlp_bias": (False,),
    "use_sliding_window": (False,),
}


class ConfigError(ValueError):
    """A model config that is missing a field, has an unknown one, or asks for unsupported semantics."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling as in transformers' `rope_parameters` (types: linear, llama3)."""

    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters y = x @ W + (alpha / rank) * (x @ A) @ B on the projections named in `targets`
    (attention q, k, v, o; MLP gate, up, down). rank 0 = no adapters (the model is unchanged)."""

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 0:
            raise ConfigError(f"lora.rank must be an integer >= 0 (0 = off), got {self.rank!r}")
        if self.rank and not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha!r}")
        unknown = sorted(set(self.targets) - set(LORA_TARGETS))
        if unknown or (self.rank and not self.targets):
            raise ConfigError(f"lora.targets={tuple(self.targets)!r}: expected a non-empty subset of {LORA_TARGETS}")
        object.__setattr__(self, "targets", tuple(t for t in LORA_TARGETS if t in self.targets))

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def on(self, target: str) -> bool:
        return self.enabled and target in self.targets


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Qwen2/Llama-family decoder plus our numerics policy.

    `param_dtype` is the storage dtype of the weights, `compute_dtype` the dtype of matmul inputs
    (norms, softmax and logits are always computed in float32). `remat` rematerializes each layer in
    the backward pass ("none", "full", or "dots": keep matmul outputs). `scan_layers` runs the layers
    as one `lax.scan` over their stacked states whenever there is no KV cache (training, scoring,
    shared-prefix prefill): compile time no longer grows with depth, and with remat the backward
    pass recomputes exactly one layer at a time. Decoding with a KV cache always loops in Python.
    `lora` adds low-rank adapters (training then updates only them; see models/lora.py).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    model_type: str = "qwen2"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = RopeScaling()
    max_position_embeddings: int = 32768
    attention_bias: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    remat: str = "none"
    scan_layers: bool = True
    lora: LoRAConfig = LoRAConfig()

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"model_type {self.model_type!r} is not supported (supported: {SUPPORTED_MODEL_TYPES})")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        for name in ("param_dtype", "compute_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {DTYPES}")
        if self.remat not in ("none", "full", "dots"):
            raise ConfigError(f"remat={self.remat!r} is not one of ('none', 'full', 'dots')")
        if self.rope_scaling.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ConfigError(f"rope type {self.rope_scaling.rope_type!r} is not supported (supported: {SUPPORTED_ROPE_TYPES})")
        if not isinstance(self.lora, LoRAConfig):
            raise ConfigError(f"lora must be a LoRAConfig, got {type(self.lora).__name__}")

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        return (self.eos_token_id,) if isinstance(self.eos_token_id, int) else tuple(self.eos_token_id)

    def replace(self, **changes: Any) -> "ModelConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    # ---- Hugging Face config.json -------------------------------------------------------------

    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any], source: str = "config.json", **overrides: Any) -> "ModelConfig":
        """Builds the config from a HF config dict; `source` names the file in error messages."""
        hf = dict(hf)
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"{source}: unsupported architecture model_type={model_type!r} "
                              f"(architectures={hf.get('architectures')}); supported: {SUPPORTED_MODEL_TYPES}")
        used = {
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "model_type", "rms_norm_eps", "rope_theta", "rope_scaling",
            "rope_parameters", "max_position_embeddings", "attention_bias", "tie_word_embeddings",
        }
        unknown = sorted(set(hf) - used - _HARMLESS_HF_KEYS - set(_REQUIRED_VALUES))
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s) {unknown}; refusing to guess their meaning")
        for key, allowed in _REQUIRED_VALUES.items():
            if key in hf and hf[key] not in allowed:
                raise ConfigError(f"{source}: {key}={hf[key]!r} is not supported (only {allowed})")

        def need(key: str) -> Any:
            if key not in hf or hf[key] is None:
                raise ConfigError(f"{source}: missing required field {key!r}")
            return hf[key]

        num_heads = need("num_attention_heads")
        hidden = need("hidden_size")
        head_dim = hf.get("head_dim") or hidden // num_heads
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        rope_theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
        rope_type = rope.pop("rope_type", rope.pop("type", "default"))
        known_rope = {f.name for f in dataclasses.fields(RopeScaling)}
        extra_rope = sorted(set(rope) - known_rope)
        if extra_rope:
            raise ConfigError(f"{source}: unknown rope parameter(s) {extra_rope} for rope_type={rope_type!r}")
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ConfigError(f"{source}: rope_type={rope_type!r} is not supported (supported: {SUPPORTED_ROPE_TYPES})")
        kwargs = dict(
            vocab_size=need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=need("intermediate_size"),
            num_layers=need("num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            model_type=model_type,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            rope_scaling=RopeScaling(rope_type=rope_type, **rope),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            attention_bias=bool(hf.get("attention_bias", model_type == "qwen2")),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(hf["eos_token_id"]) if isinstance(hf.get("eos_token_id"), list) else hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json that transformers loads as Qwen2ForCausalLM / LlamaForCausalLM."""
        rope: dict[str, Any] = {"rope_type": self.rope_scaling.rope_type, "rope_theta": self.rope_theta}
        if self.rope_scaling.rope_type != "default":
            rope["factor"] = self.rope_scaling.factor
        if self.rope_scaling.rope_type == "llama3":
            rope.update(low_freq_factor=self.rope_scaling.low_freq_factor,
                        high_freq_factor=self.rope_scaling.high_freq_factor,
                        original_max_position_embeddings=self.rope_scaling.original_max_position_embeddings)
        out = {
            "architectures": ["Qwen2ForCausalLM" if self.model_type == "qwen2" else "LlamaForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": rope,
            "max_position_embeddings": self.max_position_embeddings,
            "attention_bias": self.attention_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
        }
        if self.model_type == "llama":
            out["mlp_bias"] = False
        else:
            out["use_sliding_window"] = False
        return out


def load_hf_config(path: str | pathlib.Path, **overrides: Any) -> ModelConfig:
    """Reads `config.json` from a checkpoint directory (or the file itself)."""
    path = pathlib.Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{file}: no config.json found")
    try:
        hf = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file}: invalid JSON at line {e.lineno}: {e.msg}") from None
    return ModelConfig.from_hf_dict(hf, source=str(file), **overrides)
