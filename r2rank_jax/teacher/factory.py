"""Teacher settings as one typed spec, and the teacher (plus the tokenizer for prompts) it builds."""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

from r2rank_jax.data.prompt_text import ANSWER_CLOSE
from r2rank_jax.teacher.base import Teacher

TEACHERS: tuple[str, ...] = ("openai", "local", "scripted", "grounded")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    kind: str = "scripted"
    # openai: an OpenAI-compatible endpoint (the key itself is only ever read from the environment)
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "deepseek-reasoner"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 120.0
    max_http_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_tokens: int = 2048
    temperature: float | None = None
    # local: a JAX model from an HF directory, a GGUF file or a tiny random model (temperature above: None = greedy)
    hf_dir: str | None = None
    gguf: str | None = None
    synthetic_tiny: bool = False
    max_new_tokens: int = 384
    batch_size: int = 8
    dtype: str = "float32"
    # scripted: the synthetic world's attribute reasoner
    noise: float = 0.1
    threshold: float = 1.3
    style: str = "full"                  # "full" sentences, "concise" counts, "graded" (counts + level), "stepwise" (graded, counts worked out item by item) or "tally" (stepwise by attribute, running counts) (short rollouts on a CPU)
    # grounded: real data's title evidence + train popularity (teacher.grounded); None = the threshold fitted
    # on the train split (grounded.THRESHOLD), a number moves the decision boundary of the match score
    grounded_threshold: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.kind!r}")
        t = self.grounded_threshold
        if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
            raise ValueError(f"grounded_threshold must be a finite number >= 0 or None (the fitted one), got {t!r}")


def make_teacher(spec: TeacherSpec, benchmark_dir: str | os.PathLike[str],
                 tokenizer: Any = None) -> tuple[Teacher, Any | None]:
    """(teacher, the local model's tokenizer or None). ``tokenizer`` overrides the local model's own."""
    if spec.kind == "scripted":
        from r2rank_jax.data.synthetic import load_item_attributes
        from r2rank_jax.teacher.scripted import ScriptedTeacher

        return ScriptedTeacher(load_item_attributes(benchmark_dir), spec.noise, spec.threshold, spec.seed,
                               spec.style), None
    if spec.kind == "grounded":
        from r2rank_jax.teacher.grounded import THRESHOLD, GroundedTeacher

        threshold = THRESHOLD if spec.grounded_threshold is None else float(spec.grounded_threshold)
        return GroundedTeacher.from_benchmark(benchmark_dir, threshold=threshold), None
    if spec.kind == "openai":
        from r2rank_jax.teacher.http_teacher import OpenAITeacher
        from r2rank_jax.teacher.openai_client import ChatClient, ClientConfig

        client = ChatClient(ClientConfig(
            base_url=spec.base_url, model=spec.model, api_key_env=spec.api_key_env, timeout=spec.timeout,
            max_attempts=spec.max_http_attempts, backoff=spec.backoff, max_backoff=spec.max_backoff,
            max_tokens=spec.max_tokens, temperature=spec.temperature), seed=spec.seed)
        return OpenAITeacher(client, spec.concurrency), None
    from r2rank_jax.teacher.generator import GenerationOptions, SamplerGenerator
    from r2rank_jax.teacher.local import LocalTeacher
    from r2rank_jax.teacher.local_model import load_local_model

    model, tokenizer, name = load_local_model(hf_dir=spec.hf_dir, gguf=spec.gguf, synthetic_tiny=spec.synthetic_tiny,
                                              tokenizer=tokenizer, dtype=spec.dtype)
    generator = SamplerGenerator(model, tokenizer)
    options = GenerationOptions(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature or 0.0,
                                stop=(ANSWER_CLOSE,), seed=spec.seed)
    teacher = LocalTeacher(generator, options, spec.batch_size,
                           name=f"local:{name}")
    return teacher, tokenizer


def default_tokenizer_dir(benchmark_dir: str | os.PathLike[str]) -> str | None:
    """``BENCH/../tokenizer`` (where `data.synthetic` puts the world's tokenizer) if it exists."""
    candidate = pathlib.Path(benchmark_dir).resolve().parent / "tokenizer"
    return str(candidate) if (candidate / "tokenizer_config.json").is_file() else None
