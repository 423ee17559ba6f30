"""The real serve module with a tiny random model over HTTP on 127.0.0.1."""
import http.client
import json

import numpy as np
import pytest

from r2rank_jax.serve.engine import Engine
from r2rank_jax.serve.schema import RankRequest
from r2rank_jax.teacher import ledger
from r2rank_jax.teacher.generator import SamplerGenerator
from r2rank_jax.teacher.http_teacher import OpenAITeacher
from r2rank_jax.teacher.openai_client import ChatClient, ClientConfig
from r2rank_jax.teacher.synthesize import SynthesisConfig, synthesize

# 16 history items put the rank prompts in the same 512-token bucket as the chat and teacher tests.
HISTORY = [f"{a} {n} - Racing - PS5 - Vortex Games" for a in ("Nebula", "Iron", "Golden", "Silent")
           for n in ("Racer", "Circuit", "Arena", "Storm")]
CANDIDATES = ["Wild Arena - Sports - PC - Pixel Harbor", "Golden Rift - Racing - PS5 - Vortex Games",
              "Silent Saga - Horror - Switch - Lumen Studios"]


def request(server, method, path, body=None, raw=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=120)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_health_and_models(served):
    assert request(served, "GET", "/healthz") == (200, {"status": "ok", "model": "tiny"})
    status, body = request(served, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list" and body["data"][0]["id"] == "tiny"


def test_chat_round_trip_with_our_client(served):
    client = ChatClient(ClientConfig(base_url=served.url + "/v1", model="tiny", max_tokens=8, timeout=120,
                                     max_attempts=1, temperature=0.7))
    # A long message lands in the same prompt bucket as the teacher test below: one compile for both.
    long = "Nebula Racer - Racing - PS5 - Vortex Games; " * 30
    result = client.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": long}])
    assert result.failure is None and isinstance(result.content, str)
    assert result.finish_reason in ("stop", "length")
    assert result.usage["completion_tokens"] <= 8
    assert result.usage["total_tokens"] == result.usage["prompt_tokens"] + result.usage["completion_tokens"]


def test_our_http_teacher_against_our_server(served, tiny_world, tmp_path):
    from transformers import AutoTokenizer

    from r2rank_jax.data.benchmark import load_items, load_split
    from r2rank_jax.data.prompts import PromptBuilder

    bench, tok = tiny_world
    builder = PromptBuilder(AutoTokenizer.from_pretrained(str(tok)), load_items(bench))
    client = ChatClient(ClientConfig(base_url=served.url + "/v1", model="tiny", max_tokens=8, timeout=120))
    teacher = OpenAITeacher(client, concurrency=2)
    stats = synthesize(teacher, builder, load_split(bench, "train"), tmp_path, SynthesisConfig(max_users=1))
    teacher.close()
    # The random model answers, without an answer tag: 2 responses, no transport failures.
    assert stats["responses"] == 2 and stats["requests"] == 2 and stats["failures_by_kind"].get("malformed") is None
    assert sum(1 for _ in open(tmp_path / ledger.LEDGER)) == 2


def test_rank_sorts_candidates_by_score(served):
    status, body = request(served, "POST", "/v1/rank", {"history": HISTORY, "profile": "age_group: 25-34",
                                                        "candidates": CANDIDATES, "max_new_tokens": 8})
    assert status == 200 and body["object"] == "ranking" and body["head"] == "trained"
    ranking = body["ranking"]
    assert [r["rank"] for r in ranking] == [1, 2, 3]
    assert sorted(r["index"] for r in ranking) == [0, 1, 2]
    assert [r["candidate"] for r in ranking] == [CANDIDATES[r["index"]] for r in ranking]
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    assert all(isinstance(r["rationale"], str) for r in ranking)


def test_untrained_head_gives_zero_scores(tiny_parts):
    model, tokenizer = tiny_parts
    engine = Engine(model, tokenizer, SamplerGenerator(model, tokenizer), name="tiny")
    out = engine.rank(RankRequest(history=tuple(HISTORY), profile=None, candidates=tuple(CANDIDATES), max_new_tokens=8))
    assert out["head"] == "untrained" and "note" in out
    assert [r["score"] for r in out["ranking"]] == [0.0] * 3 and [r["index"] for r in out["ranking"]] == [0, 1, 2]


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"model": "tiny"}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop[0]"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ("/v1/rank", {"history": []}, "candidates"),
    ("/v1/rank", {"candidates": ["a"]}, "history"),
    ("/v1/rank", {"history": [], "candidates": []}, "candidates"),
    ("/v1/rank", {"history": ["a", ""], "candidates": ["b"]}, "history[1]"),
    ("/v1/rank", {"history": [], "candidates": ["b"], "max_new_tokens": 0}, "max_new_tokens"),
    ("/v1/rank", [1, 2], None),
    ("/v1/rank", {"history": ["Nebula Racer Gold Edition - Racing - PS5 - Vortex Games " * 4] * 200,
                  "candidates": ["b"]}, "history"),  # too long for the largest prompt bucket
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Racing PS5 " * 3000}]}, "messages"),
])
def test_bad_requests_name_the_field(served, path, body, param):
    status, out = request(served, "POST", path, body)
    assert status == 400 and out["error"]["type"] == "invalid_request_error"
    assert out["error"]["param"] == param and out["error"]["message"]


def test_routing_and_body_errors(served):
    assert request(served, "GET", "/nope")[0] == 404
    assert request(served, "GET", "/v1/rank")[0] == 405
    assert request(served, "POST", "/healthz", {})[0] == 405
    status, out = request(served, "POST", "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and out["error"]["param"] == "body"


def test_internal_errors_are_500_with_a_message(served, monkeypatch):
    def boom(req):
        raise RuntimeError("generator exploded")

    monkeypatch.setattr(served.engine, "chat", boom)
    status, out = request(served, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert status == 500 and "generator exploded" in out["error"]["message"] and out["error"]["type"] == "server_error"


def test_sampler_hidden_state_matches_a_teacher_forced_forward(served):
    """Rank scores use the sampler's hidden state at the last generated token; a forward pass over
    prompt + rationale (`Engine.score`) must give the same scores."""
    from r2rank_jax.data import prompt_text as pt
    from r2rank_jax.serve.engine import STOP, _chat_ids
    from r2rank_jax.teacher.generator import GenerationOptions

    engine = served.engine
    prompts = [_chat_ids(engine.tokenizer, [{"role": "user", "content": pt.pointwise_message("cot", None, HISTORY, c)}])
               for c in CANDIDATES]
    gens = engine.generator.generate(prompts, GenerationOptions(max_new_tokens=8, stop=(STOP,)))
    from_sampler = np.asarray(engine.head(np.stack([g.hidden for g in gens])))
    np.testing.assert_allclose(engine.score(prompts, gens), from_sampler, rtol=1e-4, atol=1e-5)
    assert len(set(from_sampler.tolist())) == 3
