"""Bounded load test of `python -m r2rank_jax.serve` on 127.0.0.1: C concurrent clients x R requests each.

    python -m r2rank_jax.bench.serve_load [--clients 8] [--requests 50] [--endpoint chat|rank|mix]
        [--max_tokens 8] [--url http://127.0.0.1:PORT]

Without ``--url`` the server is started in this process (the random tiny model over the synthetic
world's tokenizer, `--synthetic_tiny`) on a free loopback port and shut down at the end. One request
is sent first and not timed (it compiles). Every client sends its R requests one after another, so at
most C are in flight; the run stops by itself after C x R requests (each with a --timeout). The
engine serves one generation at a time (a lock), so latency under load is mostly queueing.

Prints one JSON line last: requests, failures (non-200 or transport errors, by kind), wall seconds,
requests/s, and latency p50/p90/p99/max in milliseconds.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

CHAT = {"messages": [{"role": "user", "content": "Recommend a racing game for the PS5."}]}
RANK = {"history": ["Nebula Racer - Racing - PS5 - Vortex Games", "Iron Circuit - Racing - PS5 - Vortex Games"],
        "candidates": ["Wild Arena - Sports - PC - Pixel Harbor", "Golden Rift - Racing - PS5 - Vortex Games"]}


def request_body(endpoint: str, i: int, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """(path, body) of request i: ``mix`` alternates chat and rank."""
    kind = endpoint if endpoint != "mix" else ("chat", "rank")[i % 2]
    if kind == "chat":
        return "/v1/chat/completions", CHAT | {"max_tokens": max_tokens}
    if kind == "rank":
        return "/v1/rank", RANK | {"max_new_tokens": max_tokens}
    raise ValueError(f"--endpoint must be chat, rank or mix, got {endpoint!r}")


def post(url: str, path: str, body: dict[str, Any], timeout: float) -> tuple[int, float]:
    """(HTTP status or 0 on a transport error, seconds)."""
    parsed = urllib.parse.urlsplit(url)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        json.loads(resp.read())
        status = resp.status
    except (OSError, http.client.HTTPException, ValueError):
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def run_load(url: str, clients: int, requests: int, endpoint: str = "chat", max_tokens: int = 8,
             timeout: float = 120.0) -> dict[str, Any]:
    """Sends clients x requests requests (one warm-up first, untimed); returns the summary (module docstring)."""
    if clients < 1 or requests < 1:
        raise ValueError(f"--clients and --requests must be >= 1, got {clients}, {requests}")
    post(url, *request_body(endpoint, 0, max_tokens), timeout)
    if endpoint == "mix":
        post(url, *request_body(endpoint, 1, max_tokens), timeout)

    def client(c: int) -> list[tuple[int, float]]:
        return [post(url, *request_body(endpoint, c * requests + i, max_tokens), timeout) for i in range(requests)]

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    latencies = [s * 1000 for _, s in results]
    failures = Counter(str(status or "transport") for status, _ in results if status != 200)
    return {"endpoint": endpoint, "clients": clients, "requests": len(results), "failures": sum(failures.values()),
            "failures_by_kind": dict(failures), "wall_s": round(wall, 3), "requests_per_s": round(len(results) / wall, 2),
            "max_tokens": max_tokens,
            **{f"p{q}_ms": round(percentile(latencies, q), 1) for q in (50, 90, 99)}, "max_ms": round(max(latencies), 1)}


def local_server(max_tokens_limit: int = 256):
    """(server, thread): the tiny synthetic model behind `serve.Server` on a free loopback port."""
    from r2rank_jax.serve.engine import Engine
    from r2rank_jax.serve.server import Server
    from r2rank_jax.teacher.generator import SamplerGenerator
    from r2rank_jax.teacher.local_model import load_local_model

    model, tokenizer, name = load_local_model(synthetic_tiny=True)
    engine = Engine(model, tokenizer, SamplerGenerator(model, tokenizer), name=name, max_tokens_limit=max_tokens_limit)
    server = Server(engine, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m r2rank_jax.bench.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50, help="per client")
    p.add_argument("--endpoint", default="chat", choices=["chat", "rank", "mix"])
    p.add_argument("--max_tokens", type=int, default=8, help="new tokens per chat reply / per rationale")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--url", default=None, help="a running server (default: start the tiny one here)")
    args = p.parse_args(argv)
    server = None
    if args.url is None:
        import logging

        logging.getLogger("r2rank_jax.serve").setLevel(logging.WARNING)
        server, _ = local_server()
        url = server.url
    else:
        url = args.url.rstrip("/")
    try:
        summary = run_load(url, args.clients, args.requests, args.endpoint, args.max_tokens, args.timeout)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    print(json.dumps(summary))
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
