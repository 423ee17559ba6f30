"""HTTP front end: an OpenAI-compatible subset plus ``/v1/rank``, on `http.server.ThreadingHTTPServer`.

Routes: ``GET /healthz``, ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream: true``
answers with server-sent ``chat.completion.chunk`` events, sent once the generation is done: a role
chunk, the content, a finish chunk, a usage chunk when ``stream_options.include_usage``, ``[DONE]``),
``POST /v1/rank`` (docs/serve.md has its JSON schema). Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``: 400 for invalid requests (``param`` names the field), 404 unknown path, 405 wrong
method, 411/413 for a missing or oversized body, 500 with the exception's message.
"""
from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from r2rank_jax.serve import schema
from r2rank_jax.serve.engine import Engine

log = logging.getLogger("r2rank_jax.serve")
MAX_BODY_BYTES = 4 << 20
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                411: "invalid_request_error", 413: "invalid_request_error", 500: "server_error"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


class _Stream(Exception):
    """Raised by a route whose reply is a stream of events."""

    def __init__(self, chunks: list[dict[str, Any]]):
        super().__init__("stream")
        self.chunks = chunks


def stream_chunks(reply: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A chat.completion reply as OpenAI's ``chat.completion.chunk`` objects (role, content, finish[, usage])."""
    choice = reply["choices"][0]
    base = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"]}

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""}, None), chunk({"content": choice["message"]["content"]}, None),
           chunk({}, choice["finish_reason"])]
    if include_usage:
        out.append(base | {"choices": [], "usage": reply["usage"]})
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "r2rank-serve/0.1"
    server: "Server"

    GET_ROUTES = ("/healthz", "/v1/models")
    POST_ROUTES = ("/v1/chat/completions", "/v1/rank")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            self._answer(method)
        except ConnectionError as e:   # the client hung up (mid-body, or before reading the reply): no one to answer
            self.close_connection = True
            log.info("%s hung up before the reply to %s %s (%s)", self.address_string(), method, self.path, e)

    def _answer(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            routes = self.GET_ROUTES if method == "GET" else self.POST_ROUTES
            if path not in routes:
                if path in self.GET_ROUTES + self.POST_ROUTES:
                    raise HTTPError(405, f"{method} is not allowed on {path}")
                raise HTTPError(404, f"no route {path}")
            self._send(200, self._route(path))
        except _Stream as e:
            self._send_events(e.chunks)
        except HTTPError as e:
            self._error(e.status, str(e), e.param)
        except schema.BadRequest as e:
            self._error(400, str(e), e.param)
        except ConnectionError:
            raise
        except Exception as e:  # noqa: BLE001 — a bug must become a 500, not a dropped connection
            log.exception("error while serving %s", path)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _route(self, path: str) -> dict[str, Any]:
        engine = self.server.engine
        if path == "/healthz":
            return {"status": "ok", "model": engine.name}
        if path == "/v1/models":
            return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": engine.created,
                                                "owned_by": "r2rank_jax"}]}
        body = self._json_body()
        if path == "/v1/chat/completions":
            request = schema.chat_request(body, engine.max_tokens_limit, engine.default_max_tokens)
            reply = engine.chat(request)
            if request.stream:
                raise _Stream(stream_chunks(reply, request.include_usage))
            return reply
        return engine.rank(schema.rank_request(body, engine.max_tokens_limit, engine.default_max_tokens))

    def _json_body(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "a Content-Length header is required")
        try:
            n = int(length)
        except ValueError:
            raise HTTPError(400, f"invalid Content-Length {length!r}") from None
        if n < 0:
            raise HTTPError(400, f"invalid Content-Length {length!r}")
        if n > MAX_BODY_BYTES:
            self.close_connection = True          # the body is not read: this connection cannot be reused
            raise HTTPError(413, f"request body of {n} bytes exceeds {MAX_BODY_BYTES}")
        raw = self.rfile.read(n)
        if len(raw) < n:
            raise ConnectionAbortedError(f"the body ended after {len(raw)} of its {n} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"the request body is not valid JSON ({e})", param="body") from None
        except RecursionError:
            raise HTTPError(400, "the request body is nested too deeply", param="body") from None

    def _send(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, chunks: list[dict[str, Any]]) -> None:
        """Server-sent events, one ``data:`` line per chunk, then ``data: [DONE]``; the connection closes."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _error(self, status: int, message: str, param: str | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": _ERROR_TYPES.get(status, "error"), "param": param,
                                      "code": HTTPStatus(status).phrase.lower().replace(" ", "_")}})

    def log_message(self, format: str, *args: Any) -> None:  # request lines only, never headers
        log.info("%s %s", self.address_string(), format % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0):
        self.engine = engine
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
