"""A fault-injecting fake OpenAI chat-completions server on 127.0.0.1 (tests only).

Replies follow a script: each request pops the next action from ``actions`` (then ``default`` when
the script is exhausted):

- ``"ok"``: 200 with a chat.completion whose content is ``responder(messages)``;
- ``"ok_reasoning"``: as ok, plus ``reasoning_content``;
- ``"429"`` / ``"500"`` / ``"503"`` / ``"400"``: that status with a JSON error body;
- ``"429_retry_after"``: 429 with ``Retry-After: 0.05``;
- ``"garbage"``: 200 with a body that is not JSON;
- ``"no_choices"``: 200 with JSON lacking ``choices``;
- ``"no_content"``: 200 with ``choices[0].message`` lacking ``content``;
- ``"slow"``: sleeps ``slow_seconds`` before answering ok (for client timeouts);
- ``"echo_auth_500"``: 500 whose body echoes the Authorization header (for redaction tests);
- ``"drop"``: closes the connection without a reply.

Every request is recorded in ``requests`` as ``(path, headers dict, parsed body or None)``.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def always(decision: str) -> Callable[[list[dict]], str]:
    def respond(messages: list[dict]) -> str:
        return ("#Initial reasoning: the history and the candidate were compared.\n#Self-check: nothing is missing.\n"
                f"#Final conclusion and suggestion: decided.\n<answer>{decision}</answer>")
    return respond


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that timed out leave broken pipes behind: expected here


class FakeOpenAI:
    def __init__(self, actions: Iterable[str] = (), default: str = "ok",
                 responder: Callable[[list[dict]], str] = always("Recommend"), slow_seconds: float = 1.0):
        self.actions = list(actions)
        self.default = default
        self.responder = responder
        self.slow_seconds = slow_seconds
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self) -> str:
        with self._lock:
            return self.actions.pop(0) if self.actions else self.default

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append((h.path, dict(h.headers), body))
        action = self._next()
        if action == "drop":
            h.close_connection = True
            h.connection.close()
            return
        if action == "slow":
            time.sleep(self.slow_seconds)
            action = "ok"
        if action in ("ok", "ok_reasoning"):
            message = {"role": "assistant", "content": self.responder((body or {}).get("messages", []))}
            if action == "ok_reasoning":
                message["reasoning_content"] = "thinking about the candidate"
            payload = {"id": "fake-1", "object": "chat.completion", "model": (body or {}).get("model"),
                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            return self._send(h, 200, json.dumps(payload).encode())
        if action == "garbage":
            return self._send(h, 200, b"<html>surprise</html>")
        if action == "no_choices":
            return self._send(h, 200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
        if action == "no_content":
            return self._send(h, 200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant"}}]}).encode())
        if action == "echo_auth_500":
            return self._send(h, 500, json.dumps({"error": f"bad auth {h.headers.get('Authorization')}"}).encode())
        if action == "429_retry_after":
            return self._send(h, 429, b'{"error": "slow down"}', {"Retry-After": "0.05"})
        if action in ("429", "500", "503", "400"):
            return self._send(h, int(action), json.dumps({"error": {"message": f"fake {action}"}}).encode())
        raise ValueError(f"unknown fake action {action!r}")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
