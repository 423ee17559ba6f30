"""Validation of request bodies: typed requests out, `BadRequest` naming the offending field otherwise."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

ROLES = ("system", "user", "assistant")
MAX_STOP = 4
MAX_CANDIDATES = 64
MAX_HISTORY = 200


class BadRequest(ValueError):
    """A 400: ``param`` names the field (OpenAI's error object carries it as ``param``)."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int
    stream: bool = False                 # server-sent events (chat.completion.chunk), sent once generation ends
    include_usage: bool = False          # stream_options.include_usage: a last chunk with the usage


@dataclasses.dataclass(frozen=True)
class RankRequest:
    history: tuple[str, ...]
    profile: str | None
    candidates: tuple[str, ...]
    max_new_tokens: int


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(None, "the request body must be a JSON object")
    return body


def _number(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(name, f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise BadRequest(name, f"{name} must be a finite number, got {value}")
    if value > hi or value < lo or (lo_open and value == lo):
        raise BadRequest(name, f"{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value}")
    return float(value)


def _int(body: dict, name: str, default: int, limit: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(name, f"{name} must be an integer, got {type(value).__name__}")
    if not 1 <= value <= limit:
        raise BadRequest(name, f"{name} must be in [1, {limit}], got {value}")
    return value


def _content(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: [{"type": "text", "text": ...}]
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"{param}[{i}]", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(param, f"{param} must be a string, got {type(value).__name__}")


def _strings(body: dict, name: str, limit: int, required: bool, blank_ok: bool = False) -> tuple[str, ...]:
    value = body.get(name)
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        raise BadRequest(name, f"{name} must be a list of strings")
    if required and not value:
        raise BadRequest(name, f"{name} must not be empty")
    if len(value) > limit:
        raise BadRequest(name, f"{name} holds {len(value)} entries, at most {limit} are allowed")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not (v if blank_ok else v.strip()):
            raise BadRequest(f"{name}[{i}]", f"{name}[{i}] must be a non-empty string")
    return tuple(value)


def chat_request(body: Any, max_tokens_limit: int, default_max_tokens: int) -> ChatRequest:
    body = _object(body)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("stream", f"stream must be a boolean, got {type(stream).__name__}")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise BadRequest("stream_options", "stream_options must be an object like {\"include_usage\": true}")
    if body.get("n") not in (None, 1):
        raise BadRequest("n", "only n=1 is supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages", "messages must be a non-empty list of {\"role\", \"content\"} objects")
    parsed = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}]", f"messages[{i}] must be an object")
        if m.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}].role", f"messages[{i}].role must be one of {ROLES}, got {m.get('role')!r}")
        parsed.append({"role": m["role"], "content": _content(m.get("content"), f"messages[{i}].content")})
    key = "max_completion_tokens" if body.get("max_tokens") is None and "max_completion_tokens" in body else "max_tokens"
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    stops = _strings({"stop": stop}, "stop", MAX_STOP, required=False, blank_ok=True) if stop is not None else ()
    seed = body.get("seed")
    seed = 0 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadRequest("seed", "seed must be an integer")
    return ChatRequest(messages=tuple(parsed), max_tokens=_int(body, key, default_max_tokens, max_tokens_limit),
                       temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
                       top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True), stop=stops, seed=seed,
                       stream=stream, include_usage=bool(options.get("include_usage", False)))


def rank_request(body: Any, max_tokens_limit: int, default_max_tokens: int) -> RankRequest:
    body = _object(body)
    if "candidates" not in body:
        raise BadRequest("candidates", "candidates is required: a list of item texts")
    if "history" not in body:
        raise BadRequest("history", "history is required: a list of item texts, oldest first (may be empty)")
    history = _strings(body, "history", MAX_HISTORY, required=False)
    profile = body.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise BadRequest("profile", "profile must be a string or null")
    return RankRequest(history=history, profile=profile or None,
                       candidates=_strings(body, "candidates", MAX_CANDIDATES, required=True),
                       max_new_tokens=_int(body, "max_new_tokens", default_max_tokens, max_tokens_limit))
