"""A minimal client for OpenAI-compatible ``POST {base_url}/chat/completions`` (standard library only).

- The API key is read from an environment variable (named in `ClientConfig.api_key_env`) when the
  client is built, sent as ``Authorization: Bearer ...`` and kept nowhere else: it is not part of the
  config, not in any message the client returns (server error bodies are redacted), not logged.
  Without the variable no Authorization header is sent (fine for a local vLLM or our own `serve`).
- Retries with exponential backoff and jitter on 429, 5xx, timeouts and connection errors; a
  ``Retry-After`` header (seconds or an HTTP date) replaces the computed delay (capped at
  ``max_backoff``). Other 4xx statuses and malformed 200 replies (not JSON, no
  ``choices[0].message.content``) are not retried.
- Plain `http.client` connections (one per request): environment proxies are not used.
"""
from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RETRIABLE = ("timeout", "connection", "http_429", "http_5xx")


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    base_url: str                       # e.g. https://api.deepseek.com/v1 or http://127.0.0.1:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0              # seconds, per connect and per socket read
    max_attempts: int = 5               # HTTP attempts per request, the first included
    backoff: float = 1.0                # delay before the first retry (s), doubled per retry
    max_backoff: float = 60.0
    max_tokens: int | None = 2048
    temperature: float | None = None    # None: the server's default
    top_p: float | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


@dataclasses.dataclass(frozen=True)
class ChatResult:
    content: str | None
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    failure: str | None = None              # set when content is None
    error: str | None = None
    requests: int = 0
    attempt_errors: tuple[str, ...] = ()


class _AttemptError(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_completion(body: bytes) -> tuple[str, str | None, str | None, Mapping[str, Any] | None]:
    """(content, reasoning_content, finish_reason, usage) of a chat.completion body; raises
    `_AttemptError("malformed", ...)` naming what is wrong."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _AttemptError("malformed", f"reply is not JSON: {body[:80]!r}") from None
    if not isinstance(obj, dict):
        raise _AttemptError("malformed", "reply is not a JSON object")
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = f" (error: {str(obj['error'])[:200]})" if "error" in obj else ""
        raise _AttemptError("malformed", f"reply has no choices{detail}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise _AttemptError("malformed", "reply has no choices[0].message.content string")
    reasoning = message.get("reasoning_content")
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else None
    return content, reasoning if isinstance(reasoning, str) else None, choices[0].get("finish_reason"), usage


class ChatClient:
    """Thread-safe: each call opens its own connection."""

    def __init__(self, config: ClientConfig, *, sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        self.config = config
        self._api_key = os.environ.get(config.api_key_env) or None
        parsed = urllib.parse.urlsplit(config.base_url)
        self._https = parsed.scheme == "https"
        self._host, self._port = parsed.hostname, parsed.port
        self._path = parsed.path.rstrip("/") + "/chat/completions"
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def __repr__(self) -> str:  # never shows the key
        return f"ChatClient(base_url={self.config.base_url!r}, model={self.config.model!r}, api_key={'set' if self._api_key else 'unset'})"

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def payload(self, messages: Sequence[Mapping[str, str]], **overrides: Any) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {"model": c.model, "messages": list(messages)}
        for name in ("max_tokens", "temperature", "top_p"):
            value = overrides.get(name, getattr(c, name))
            if value is not None:
                body[name] = value
        body.update({k: v for k, v in overrides.items() if k not in body and v is not None})
        return body

    def chat(self, messages: Sequence[Mapping[str, str]], **overrides: Any) -> ChatResult:
        """One chat completion with retries; never raises for HTTP, network or format errors."""
        data = json.dumps(self.payload(messages, **overrides)).encode("utf-8")
        errors: list[str] = []
        for attempt in range(self.config.max_attempts):
            try:
                content, reasoning, finish, usage = parse_completion(self._post(data))
                return ChatResult(content, reasoning, finish, usage, requests=attempt + 1, attempt_errors=tuple(errors))
            except _AttemptError as e:
                errors.append(e.kind)
                failure, message = e.kind, self.redact(str(e))
                if e.kind not in RETRIABLE or attempt + 1 == self.config.max_attempts:
                    break
                self._sleep(self.delay(attempt, e.retry_after))
        return ChatResult(None, failure=failure, error=message, requests=len(errors), attempt_errors=tuple(errors))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt + 1``: Retry-After if given, else backoff * 2**attempt with
        jitter in [50%, 100%]; both capped at max_backoff."""
        c = self.config
        if retry_after is not None:
            return min(retry_after, c.max_backoff)
        with self._rng_lock:
            jitter = 0.5 + 0.5 * self._rng.random()
        return min(c.max_backoff, c.backoff * 2 ** attempt) * jitter

    def _post(self, data: bytes) -> bytes:
        """The body of a 200 reply; raises `_AttemptError` for everything else."""
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.config.timeout)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            conn.request("POST", self._path, body=data, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (TimeoutError, socket.timeout):
            raise _AttemptError("timeout", f"no reply within {self.config.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise _AttemptError("connection", f"{type(e).__name__}: {e}") from None
        finally:
            conn.close()
        if resp.status == 200:
            return body
        snippet = body[:200].decode("utf-8", "replace")
        kind = "http_429" if resp.status == 429 else "http_5xx" if resp.status >= 500 else "http_4xx"
        raise _AttemptError(kind, f"HTTP {resp.status}: {snippet}", parse_retry_after(resp.getheader("Retry-After")))
