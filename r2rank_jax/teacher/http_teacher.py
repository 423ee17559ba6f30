"""Teacher over an OpenAI-compatible chat-completions endpoint, with bounded concurrency."""
from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator, Sequence

from r2rank_jax.teacher.base import TeacherReply, TeacherRequest
from r2rank_jax.teacher.openai_client import ChatClient


class OpenAITeacher:
    """Sends each request's message as one user turn; at most ``concurrency`` requests in flight."""

    def __init__(self, client: ChatClient, concurrency: int = 4, name: str | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.client = client
        self.concurrency = concurrency
        self.name = name or f"openai:{client.config.model}"
        self._pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher-http")

    def _ask(self, request: TeacherRequest) -> TeacherReply:
        result = self.client.chat([{"role": "user", "content": request.message}])
        return TeacherReply(request=request, text=result.content, reasoning=result.reasoning, failure=result.failure,
                            error=result.error, requests=result.requests, attempt_errors=result.attempt_errors)

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        # Submitting lazily keeps the queue short, so an interrupt loses only the in-flight requests.
        todo = iter(requests)
        running: set[cf.Future] = set()
        try:
            while True:
                while len(running) < self.concurrency:
                    request = next(todo, None)
                    if request is None:
                        break
                    running.add(self._pool.submit(self._ask, request))
                if not running:
                    return
                done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
