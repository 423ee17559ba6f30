"""Listwise answers from an OpenAI-compatible chat-completions endpoint: a `GenerateFn` over chat messages.

`EndpointGenerator(client, concurrency, max_tokens)` sends each prompt's messages (`ListwisePrompt.messages`)
through the teacher's `ChatClient` (key from the environment, never logged; retries with backoff on 429, 5xx,
timeouts and dropped connections) with at most ``concurrency`` requests in flight, greedy (temperature 0
unless given), stopping at ``</answer>``. A request that still fails gives the empty text, which
`parse_listwise` reads as unparsable: the worst case for that user. Failures are counted by kind.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from r2rank_jax.data.prompt_text import ANSWER_CLOSE
from r2rank_jax.teacher.openai_client import ChatClient


class EndpointGenerator:
    """`generate(list of message lists) -> list of texts`, in order (module docstring)."""

    def __init__(self, client: ChatClient, concurrency: int, max_tokens: int, temperature: float = 0.0,
                 stop: Sequence[str] = (ANSWER_CLOSE,)):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.client, self.concurrency = client, concurrency
        self.options = {"max_tokens": max_tokens, "temperature": temperature, "stop": list(stop) or None}
        self.requests = 0                       # HTTP attempts, retries included
        self.failures: Counter[str] = Counter()  # prompts without an answer, by the last attempt's kind
        self._lock = threading.Lock()

    def _one(self, messages: Sequence[Mapping[str, str]]) -> str:
        result = self.client.chat(list(messages), **self.options)
        with self._lock:
            self.requests += result.requests
            if result.content is None:
                self.failures[result.failure or "unknown"] += 1
        return result.content or ""

    def __call__(self, prompts: list[Any]) -> list[str]:
        with cf.ThreadPoolExecutor(max_workers=min(self.concurrency, max(len(prompts), 1)),
                                   thread_name_prefix="listwise-http") as pool:
            return list(pool.map(self._one, prompts))

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed_prompts": sum(self.failures.values()),
                "failures_by_kind": dict(self.failures)}
