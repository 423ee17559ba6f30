"""The server with the official `openai` client (chat completions, streaming, its error classes), bad
requests answered 4xx with a message while the server keeps serving, and a bounded loopback load test."""
import http.client
import json
import socket
import struct
import sys

import openai
import pytest

from r2rank_jax.bench.serve_load import percentile, run_load
from r2rank_jax.serve import schema
from r2rank_jax.serve.engine import _chat_ids
from r2rank_jax.teacher.generator import GenerationOptions

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Nebula Racer - Racing - PS5"}]


@pytest.fixture()
def client(served):
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _alive(server) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    conn.request("GET", "/healthz")
    ok = conn.getresponse().status == 200
    conn.close()
    return ok


def _direct(engine, max_tokens):
    """The engine's generator called directly, greedy: the reference text for the HTTP replies."""
    ids = _chat_ids(engine.tokenizer, MESSAGES)
    return engine.generator.generate([ids], GenerationOptions(max_new_tokens=max_tokens, temperature=0.0))[0], len(ids)


def test_chat_completion_with_the_openai_client(served, client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    gen, prompt_tokens = _direct(served.engine, 8)
    assert reply.object == "chat.completion" and reply.model == "tiny"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content == gen.text
    assert reply.choices[0].finish_reason == gen.finish_reason
    assert reply.usage.prompt_tokens == prompt_tokens and reply.usage.completion_tokens == len(gen.token_ids)
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_streaming_gives_the_same_text(served, client):
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8)
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == whole.choices[0].message.content and finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens and all(c.object == "chat.completion.chunk"
                                                                               for c in chunks)
    assert _alive(served)


@pytest.mark.parametrize("kwargs, param", [
    ({"max_tokens": 10_000}, "max_tokens"),
    ({"temperature": 5}, "temperature"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "Racing PS5 " * 3000}]}, "messages"),     # longer than the context
])
def test_openai_client_sees_a_bad_request_error(served, client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**({"model": "tiny", "messages": MESSAGES} | kwargs))
    assert info.value.status_code == 400 and info.value.body["param"] == param and info.value.body["message"]
    assert _alive(served)


def _raw(server, data: bytes, headers: dict, path="/v1/chat/completions"):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    conn.putrequest("POST", path)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    if data:
        conn.send(data)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_bad_bodies_get_4xx_and_the_server_keeps_serving(served):
    cases = [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', {}, 400, "finite"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "nested too deeply"),
        (b"\xff\xfe", {}, 400, "not valid JSON"),
        (b"", {"Content-Length": str(schema_limit() + 1)}, 413, "exceeds"),      # the body is never read
        (b"", {"Content-Length": "-5"}, 400, "Content-Length"),
        (b"", {"Content-Length": "many"}, 400, "Content-Length"),
        (b"{}", {"Transfer-Encoding": "chunked", "Content-Length": None}, 411, "Content-Length"),
    ]
    for data, headers, status, words in cases:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))} | headers
        headers = {k: v for k, v in headers.items() if v is not None}
        got, body = _raw(served, data, headers)
        assert (got, words in body["error"]["message"]) == (status, True), (data[:20], body)
        assert _alive(served)


def schema_limit() -> int:
    from r2rank_jax.serve.server import MAX_BODY_BYTES

    return MAX_BODY_BYTES


def test_rank_limits(served):
    def rank(body):
        data = json.dumps(body).encode()
        return _raw(served, data, {"Content-Type": "application/json", "Content-Length": str(len(data))}, "/v1/rank")

    status, body = rank({"history": [], "candidates": ["x"] * (schema.MAX_CANDIDATES + 1)})
    assert status == 400 and body["error"]["param"] == "candidates" and str(schema.MAX_CANDIDATES) in body["error"]["message"]
    status, body = rank({"history": "not a list", "candidates": ["x"]})
    assert status == 400 and body["error"]["param"] == "history"
    status, body = rank({"history": [], "candidates": ["x"], "profile": 3})
    assert status == 400 and body["error"]["param"] == "profile"
    assert _alive(served)


def test_a_client_that_hangs_up_does_not_stop_the_server(served, monkeypatch):
    errors = []      # socketserver's handle_error prints a traceback for what escapes a request: nothing may
    monkeypatch.setattr(served, "handle_error", lambda request, address: errors.append(sys.exc_info()[1]))
    sock = socket.create_connection(("127.0.0.1", served.server_address[1]), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"messa")
    sock.close()
    assert _alive(served)
    # A whole request, then a reset before the reply is read: the reply's write fails or lands, by timing.
    sock = socket.create_connection(("127.0.0.1", served.server_address[1]), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 9\r\n\r\n{not json")
    sock.close()
    assert _alive(served) and errors == []


def test_bounded_load_has_no_failed_request(served):
    summary = run_load(served.url, clients=4, requests=6, endpoint="mix", max_tokens=4)
    assert summary["requests"] == 24 and summary["failures"] == 0, summary
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert _alive(served)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert percentile([3.0], 99) == 3.0


# --------------------------------------------------------------------------- docs/rank.schema.json

SCHEMA_FILE = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "rank.schema.json"
TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None)}


def violations(value, schema, where="$"):
    """The subset of JSON Schema the file uses (type, required, properties, items, enum, min/max)."""
    out = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if isinstance(value, bool) or not any(isinstance(value, TYPES[t]) for t in types):
            return [f"{where}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    for key, test in (("minimum", lambda v, m: v >= m), ("minItems", lambda v, m: len(v) >= m),
                      ("maxItems", lambda v, m: len(v) <= m), ("minLength", lambda v, m: len(v) >= m)):
        if key in schema and not test(value, schema[key]):
            out.append(f"{where}: {key} {schema[key]}")
    if isinstance(value, dict):
        out += [f"{where}: missing {k}" for k in schema.get("required", ()) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                out += violations(value[k], sub, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += violations(v, schema["items"], f"{where}[{i}]")
    return out


def test_rank_schema_in_docs_matches_the_server(served):
    from test_serve_endpoints import CANDIDATES, HISTORY, request

    defs = json.loads(SCHEMA_FILE.read_text())["$defs"]
    req = defs["request"]["properties"]
    assert req["candidates"]["maxItems"] == schema.MAX_CANDIDATES and req["history"]["maxItems"] == schema.MAX_HISTORY
    body = {"history": HISTORY, "profile": "age_group: 25-34", "candidates": CANDIDATES, "max_new_tokens": 8}
    assert violations(body, defs["request"]) == []
    status, reply = request(served, "POST", "/v1/rank", body)
    assert status == 200 and violations(reply, defs["reply"]) == []
    # A body the schema rejects is one the server rejects, and the other way round.
    for bad in ({"history": [], "candidates": []}, {"history": [""], "candidates": ["a"]}, {"candidates": ["a"]}):
        assert violations(bad, defs["request"]) and request(served, "POST", "/v1/rank", bad)[0] == 400
