"""The launcher's ``synthesize`` stage: `run_stage(cfg, wd)` maps an `ExperimentConfig` onto
`synthesize_benchmark` (benchmark and tokenizer from ``prepare``, corpus into ``WORKDIR/teacher``).

Mapping: ``cfg.teacher`` gives the teacher kind, endpoint, key variable, concurrency, noise,
negatives per user and max new tokens; a ``local`` teacher is ``cfg.model`` (hf/gguf/smollm2; a
``random`` model becomes the tiny random model); ``cfg.data.max_prompt_tokens`` is the prompt budget;
``cfg.seed`` seeds the negative choice and the scripted noise. The local teacher rationalizes
(answer-conditioned hint), the others do not.
"""
from __future__ import annotations

from typing import Any

from r2rank_jax.config import compute_dtype
from r2rank_jax.data.prompts import PromptConfig
from r2rank_jax.run.builders import prompt_config
from r2rank_jax.teacher.factory import TeacherSpec
from r2rank_jax.teacher.synthesize import SynthesisConfig, synthesize_benchmark


def from_experiment(cfg: Any) -> tuple[TeacherSpec, SynthesisConfig, PromptConfig]:
    t, m = cfg.teacher, cfg.model
    local: dict[str, Any] = {}
    if t.kind == "local":
        if m.kind == "hf":
            local = {"hf_dir": m.path}
        elif m.kind in ("gguf", "smollm2"):
            from r2rank_jax.models.gguf import smollm2_gguf_path

            local = {"gguf": m.path or str(smollm2_gguf_path())}
        else:
            local = {"synthetic_tiny": True}
        local["dtype"] = compute_dtype(m.dtype)
    endpoint = {k: v for k, v in (("base_url", t.base_url), ("model", t.model)) if v}
    spec = TeacherSpec(kind=t.kind, api_key_env=t.api_key_env, concurrency=t.concurrency, noise=t.noise, style=t.style,
                       max_new_tokens=t.max_new_tokens, seed=cfg.seed, **endpoint, **local)
    config = SynthesisConfig(negatives_per_user=t.negatives_per_user, max_users=t.max_users or None, seed=cfg.seed,
                             rationalize=t.kind == "local")
    return spec, config, prompt_config(cfg)


def run_stage(cfg: Any, wd: Any) -> dict[str, Any]:
    """Synthesizes (or resumes) the corpus of ``cfg`` into ``wd.teacher``; returns the stats."""
    from r2rank_jax.run.build import load_tokenizer

    spec, config, prompt_config = from_experiment(cfg)
    benchmark = wd.require(wd.benchmark, "synthesize", "prepare")
    return synthesize_benchmark(benchmark, wd.teacher, spec, config, tokenizer=load_tokenizer(cfg, wd),
                                prompt_config=prompt_config)
