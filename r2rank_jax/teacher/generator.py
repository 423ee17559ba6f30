"""Local text generation behind a small protocol: token-id prompts in, texts (and ids) out.

`Generator` is what the local teacher and `serve` use. `GreedyGenerator` wraps
`sampling.greedy.greedy_generate`; a sampler with temperature/top-p plugs in by implementing the same
`generate` (set ``supports_sampling = True``). Stop strings are applied after decoding: the text is
cut before the first stop string, the ids after the token that completes it.

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


class Generator(Protocol):
    tokenizer: Any
    supports_sampling: bool

    def generate(self, prompts: Sequence[Sequence[int]], options: GenerationOptions) -> list[Generation]:
        ...


def _bucket(n: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"a prompt of {n} tokens exceeds the largest bucket {buckets[-1]}")


def apply_stop(tokenizer: Any, ids: Sequence[int], stop: Sequence[str]) -> tuple[str, list[int], bool]:
    """(text cut before the earliest stop string, ids up to the token completing it, stopped?)."""
    ids = list(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not hits:
        return text, ids, False
    cut = min(hits)
    target = [s for s in stop if s and text.find(s) == cut][0]
    # Smallest n whose decoded prefix holds the stop string (monotone in n, so bisect).
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if target in tokenizer.decode(ids[:mid], skip_special_tokens=True):
            hi = mid
        else:
            lo = mid + 1
    return text[:cut], ids[:lo], True


class GreedyGenerator:
    """Greedy decoding with `greedy_generate` (temperature and top_p are ignored)."""

    supports_sampling = False

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

    def generate(self, prompts: Sequence[Sequence[int]], options: GenerationOptions) -> list[Generation]:
        import jax.numpy as jnp

        from r2rank_jax.models.batching import left_pad
        from r2rank_jax.sampling.greedy import greedy_generate

        if not prompts:
            return []
        length = _bucket(max(len(p) for p in prompts), self.buckets)
        rows = 1 << (len(prompts) - 1).bit_length()
        padded = list(prompts) + [prompts[0]] * (rows - len(prompts))
        tokens, positions = left_pad(padded, pad_id=self.pad_id, length=length)
        ids, valid = greedy_generate(self.model, jnp.asarray(tokens), jnp.asarray(positions),
                                     jnp.asarray(self.eos_ids, jnp.int32), max_new_tokens=options.max_new_tokens)
        ids, valid = np.asarray(ids), np.asarray(valid)
        out = []
        for b in range(len(prompts)):
            gen = [int(t) for t, v in zip(ids[b], valid[b]) if v]
            hit_eos = bool(gen) and gen[-1] in self.eos_ids
            text, kept, stopped = apply_stop(self.tokenizer, gen, options.stop)
            finish = "stop" if stopped or hit_eos else "length"
            out.append(Generation(text=text, token_ids=tuple(kept), finish_reason=finish))
        return out
