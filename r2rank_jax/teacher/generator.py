"""Local text generation behind a small protocol: token-id prompts in, texts (and ids) out.

`Generator` is what the local teacher and `serve` use; `SamplerGenerator` implements it with
`sampling.Sampler` (greedy or temperature/top-p, stop strings). Another backend only needs
``tokenizer``, ``supports_sampling`` and ``generate``.

Prompt lengths are padded up to a bucket and batches up to a power of two, so a server or a corpus
run compiles a handful of shapes, not one per request.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

DEFAULT_BUCKETS: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0       # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclasses.dataclass(frozen=True)
class Generation:
    text: str                      # decoded without special tokens, cut before a stop string
    token_ids: tuple[int, ...]     # generated ids (the EOS or the stop string's last token included)
    finish_reason: str             # "stop" (EOS or stop string) or "length"
    hidden: Any = None             # `[D]` final hidden state at the last generated token, if the generator has it


class Generator(Protocol):
    tokenizer: Any
    supports_sampling: bool

    def generate(self, prompts: Sequence[Sequence[int]], options: GenerationOptions) -> list[Generation]:
        ...


class SamplerGenerator:
    """`sampling.Sampler` behind the `Generator` protocol: greedy at temperature 0, else temperature /
    top-p sampling with a key from ``options.seed``; stop strings end generation inside the decode loop.
    Each `Generation` carries the decoder's final hidden state at its last generated token."""

    supports_sampling = True

    def __init__(self, model: Any, tokenizer: Any, eos_ids: Sequence[int] | None = None, pad_id: int | None = None,
                 buckets: Sequence[int] = DEFAULT_BUCKETS):
        self.model = model
        self.tokenizer = tokenizer
        cfg_eos = tuple(model.config.eos_token_ids)
        tok_eos = (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ()
        self.eos_ids = tuple(eos_ids) if eos_ids is not None else tuple(dict.fromkeys(cfg_eos + tok_eos))
        if not self.eos_ids:
            raise ValueError("no EOS token id: the model config and the tokenizer define none; pass eos_ids")
        self.pad_id = pad_id if pad_id is not None else (model.config.pad_token_id or 0)
        self.buckets = tuple(buckets)
        self._samplers: dict[tuple[int, tuple[str, ...]], Any] = {}

    def max_prompt_tokens(self, max_new_tokens: int) -> int:
        """The longest prompt that fits the buckets and the model's positions with ``max_new_tokens``."""
        return min(self.buckets[-1], self.model.config.max_position_embeddings - max_new_tokens)

    def _sampler(self, max_new_tokens: int, stop: tuple[str, ...]) -> Any:
        from r2rank_jax.sampling.sampler import Sampler, SamplerConfig
        from r2rank_jax.sampling.stops import StopStrings

        key = (max_new_tokens, stop)
        if key not in self._samplers:
            if len(self._samplers) >= 16:  # stop tables decode the whole vocabulary: keep a few
                self._samplers.pop(next(iter(self._samplers)))
            stops = StopStrings.from_tokenizer(stop, self.tokenizer, self.model.config.vocab_size) if stop else None
            config = SamplerConfig(max_new_tokens=max_new_tokens, eos_ids=self.eos_ids, pad_id=self.pad_id,
                                   buckets=self.buckets)
            self._samplers[key] = Sampler(self.model, config, stops)
        return self._samplers[key]

    def generate(self, prompts: Sequence[Sequence[int]], options: GenerationOptions) -> list[Generation]:
        import jax

        from r2rank_jax.sampling.params import SamplingParams

        if not prompts:
            return []
        stop = tuple(s for s in options.stop if s)
        sampler = self._sampler(options.max_new_tokens, stop)
        rows = 1 << (len(prompts) - 1).bit_length()  # few batch shapes, few compiles
        padded = [list(p) for p in prompts] + [list(prompts[0])] * (rows - len(prompts))
        params = SamplingParams.make(rows, temperature=options.temperature, top_p=options.top_p)
        out = sampler.generate(padded, params, jax.random.key(options.seed))
        ids, valid, stopped, hidden = (np.asarray(x) for x in (out.ids, out.valid, out.stopped, out.hidden))
        result = []
        for b in range(len(prompts)):
            gen = [int(t) for t, v in zip(ids[b], valid[b]) if v]
            text = self.tokenizer.decode(gen, skip_special_tokens=True)
            cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
            if cuts:  # OpenAI semantics: the stop string is not part of the returned text
                text = text[:min(cuts)]
            result.append(Generation(text=text, token_ids=tuple(gen), finish_reason="stop" if stopped[b] else "length",
                                     hidden=hidden[b]))
        return result
