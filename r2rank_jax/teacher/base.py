"""What every teacher sees and returns, and the interface the synthesis loop drives.

A teacher gets `TeacherRequest`s (one (user, candidate) pair each, with the user message to send)
and yields one `TeacherReply` per request, in any order, as soon as it has it: the synthesis loop
writes each reply to the ledger right away, so a crash loses only the requests in flight.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

from r2rank_jax.data.benchmark import Record

# Failure kinds of one request (after retries) and of single HTTP attempts.
FAILURE_KINDS: tuple[str, ...] = ("timeout", "connection", "http_429", "http_5xx", "http_4xx", "malformed", "error")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One (user, candidate) pair of the train split and its prompts."""

    record: Record
    candidate: str
    label: int               # 1 = the user's positive
    history: tuple[str, ...]  # the history item ids the prompt shows (after the token-budget cut)
    user_message: str        # the plain self-reflective user message (what the student is asked)
    prompt: str              # that message rendered with the student's chat template, ending with the assistant header

    @property
    def key(self) -> tuple[str, str]:
        return (self.record.user_id, self.candidate)


@dataclasses.dataclass(frozen=True)
class TeacherRequest:
    pair: Pair
    message: str             # the user message sent to the teacher (may carry the rationalization hint)
    attempt: int             # 1-based attempt number for this pair


@dataclasses.dataclass(frozen=True)
class TeacherReply:
    request: TeacherRequest
    text: str | None                 # the response content; None when the request failed
    reasoning: str | None = None     # a separate reasoning field (DeepSeek-R1 ``reasoning_content``)
    failure: str | None = None       # one of FAILURE_KINDS when text is None
    error: str | None = None         # a short message for the ledger (never holds credentials)
    requests: int = 1                # requests made for this reply (retries included)
    attempt_errors: tuple[str, ...] = ()  # failure kinds of the attempts that were retried or failed


class Teacher(Protocol):
    """A source of rationales. ``name`` goes into every corpus line."""

    name: str

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        """One reply per request, yielded as each completes (order not guaranteed)."""
        ...

    def close(self) -> None:
        ...
