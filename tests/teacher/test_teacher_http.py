"""OpenAI-compatible teacher against the fault-injecting fake server on 127.0.0.1."""
import json
import logging
import socket

import pytest
from fake_openai import FakeOpenAI, always

from r2rank_jax.teacher import ledger
from r2rank_jax.teacher.http_teacher import OpenAITeacher
from r2rank_jax.teacher.openai_client import ChatClient, ClientConfig, parse_retry_after
from r2rank_jax.teacher.synthesize import SynthesisConfig, main, synthesize

SECRET = "sk-test-7f3c9a1e5b2d4c8f9e0a1b2c3d4e5f60"
MSG = [{"role": "user", "content": "hi"}]


def _client(url, sleeps=None, **kw):
    kw = {"timeout": 5.0, "max_attempts": 4, "backoff": 0.01, "max_backoff": 0.05, **kw}
    return ChatClient(ClientConfig(base_url=url, model="fake-r1", **kw), seed=0,
                      sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_retries_on_429_and_500_then_succeeds():
    sleeps = []
    with FakeOpenAI(["429", "500", "503", "ok"]) as fake:
        result = _client(fake.base_url, sleeps).chat(MSG)
    assert result.content and "<answer>Recommend</answer>" in result.content
    assert result.requests == 4 and result.attempt_errors == ("http_429", "http_5xx", "http_5xx")
    assert len(sleeps) == 3 and all(0 < s <= 0.05 for s in sleeps)
    assert [r[0] for r in fake.requests] == ["/v1/chat/completions"] * 4
    assert fake.requests[0][2]["model"] == "fake-r1" and fake.requests[0][2]["messages"] == MSG


def test_backoff_grows_and_retry_after_is_honoured():
    sleeps = []
    with FakeOpenAI(["429_retry_after", "ok"]) as fake:
        assert _client(fake.base_url, sleeps, max_backoff=10.0).chat(MSG).content
    assert sleeps == [0.05]
    c = _client("http://127.0.0.1:9/v1", backoff=1.0, max_backoff=60.0)
    delays = [c.delay(i, None) for i in range(8)]
    assert all(0.5 * min(60, 2 ** i) <= d <= min(60, 2 ** i) for i, d in enumerate(delays))
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_gives_up_after_max_attempts():
    with FakeOpenAI(default="500") as fake:
        result = _client(fake.base_url, max_attempts=3).chat(MSG)
    assert result.content is None and result.failure == "http_5xx" and result.requests == 3
    assert len(fake.requests) == 3 and "HTTP 500" in result.error


@pytest.mark.parametrize("action", ["garbage", "no_choices", "no_content"])
def test_malformed_reply_is_not_retried(action):
    with FakeOpenAI([action]) as fake:
        result = _client(fake.base_url).chat(MSG)
    assert result.failure == "malformed" and result.requests == 1 and len(fake.requests) == 1


def test_client_errors_other_than_429_are_not_retried():
    with FakeOpenAI(["400"]) as fake:
        result = _client(fake.base_url).chat(MSG)
    assert result.failure == "http_4xx" and result.requests == 1


def test_timeout_and_connection_errors():
    with FakeOpenAI(["slow", "ok"], slow_seconds=1.0) as fake:
        result = _client(fake.base_url, timeout=0.2).chat(MSG)
    assert result.content and result.attempt_errors == ("timeout",)
    with FakeOpenAI(default="slow", slow_seconds=1.0) as fake:
        result = _client(fake.base_url, timeout=0.2, max_attempts=2).chat(MSG)
    assert result.failure == "timeout" and result.requests == 2
    with FakeOpenAI(["drop", "ok"]) as fake:
        assert _client(fake.base_url).chat(MSG).attempt_errors == ("connection",)
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _client(f"http://127.0.0.1:{port}/v1", max_attempts=2).chat(MSG)
    assert result.failure == "connection" and result.requests == 2


def test_synthesis_records_failures_and_retries_them_on_resume(builder, train_records, tmp_path):
    cfg = SynthesisConfig(negatives_per_user=1, max_users=3)
    # Concurrency 1 keeps the script in request order: pair 1 ok, pair 2 fails 3 times, pair 3 garbage, ...
    with FakeOpenAI(["ok", "500", "500", "500", "garbage", "429", "ok", "slow", "ok", "ok"], slow_seconds=0.6) as fake:
        teacher = OpenAITeacher(_client(fake.base_url, max_attempts=3, timeout=0.3), concurrency=1)
        stats = synthesize(teacher, builder, train_records, tmp_path, cfg)
        teacher.close()
    assert stats["responses"] == 6 and stats["requests"] == 10
    assert stats["failures_by_kind"]["http_5xx"] == 1 and stats["failures_by_kind"]["malformed"] == 1
    assert stats["request_errors_by_kind"] == {"http_429": 1, "http_5xx": 3, "malformed": 1, "timeout": 1}
    done = [json.loads(x) for x in (tmp_path / ledger.LEDGER).read_text().splitlines()]
    assert [d["outcome"] for d in done].count("failed") == 2
    # "always Recommend": the positives are accepted, the negatives rejected.
    assert {d["outcome"] for d in done if d["outcome"] != "failed"} == {"accepted", "rejected"}
    with FakeOpenAI() as fake:  # the endpoint is healthy again: only the 2 failed pairs are asked
        teacher = OpenAITeacher(_client(fake.base_url), concurrency=2)
        again = synthesize(teacher, builder, train_records, tmp_path, cfg)
        teacher.close()
    assert again["run"]["requests"] == 2 and len(fake.requests) == 2
    assert again["run"]["skipped"] == 4
    lines = [json.loads(x) for x in (tmp_path / ledger.CORPUS).read_text().splitlines()]
    assert all(x["label"] == 1 for x in lines) and any(x["attempt"] == 2 for x in lines)


def test_concurrent_requests_and_reasoning_kept(builder, train_records, tmp_path):
    with FakeOpenAI(default="ok_reasoning", responder=always("Not Recommend")) as fake:
        teacher = OpenAITeacher(_client(fake.base_url), concurrency=4)
        stats = synthesize(teacher, builder, train_records, tmp_path,
                           SynthesisConfig(negatives_per_user=3, max_users=8, keep_reasoning=True))
        teacher.close()
    assert stats["requests"] == 32 and len(fake.requests) == 32
    assert stats["per_label"]["negative"]["acceptance_rate"] == 1.0
    assert stats["per_label"]["positive"]["acceptance_rate"] == 0.0
    lines = [json.loads(x) for x in (tmp_path / ledger.CORPUS).read_text().splitlines()]
    assert len(lines) == 24 and all(x["reasoning"] == "thinking about the candidate" for x in lines)
    # The teacher got the plain prompt (no rationalization hint by default).
    sent = fake.requests[0][2]["messages"]
    assert len(sent) == 1 and sent[0]["role"] == "user" and "Note for writing" not in sent[0]["content"]


def test_api_key_is_sent_but_never_written_or_logged(tiny_world, tmp_path, monkeypatch, capsys, caplog):
    bench, tok = tiny_world
    monkeypatch.setenv("R2RANK_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(["echo_auth_500", "ok", "400"], default="ok") as fake:
        args = ["--benchmark", str(bench), "--out", str(tmp_path / "out"), "--teacher", "openai",
                "--tokenizer", str(tok), "--base_url", fake.base_url, "--model", "fake-r1",
                "--api_key_env", "R2RANK_TEST_KEY", "--max_users", "3", "--concurrency", "1",
                "--backoff", "0.01", "--max_backoff", "0.02", "--timeout", "5"]
        assert main(args) == 0
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for _, h, _ in fake.requests)
    out = capsys.readouterr()
    texts = [out.out, out.err, caplog.text]
    texts += [p.read_text() for p in (tmp_path / "out").iterdir()]
    assert len(texts) == 6  # stdout, stderr, log, corpus, ledger, stats
    assert all(SECRET not in t for t in texts)
    done = (tmp_path / "out" / ledger.LEDGER).read_text()
    assert "[redacted]" in done or "http_4xx" in done
    assert SECRET not in repr(_client(fake.base_url, api_key_env="R2RANK_TEST_KEY"))


def test_no_key_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("R2RANK_TEST_KEY", raising=False)
    with FakeOpenAI() as fake:
        assert _client(fake.base_url, api_key_env="R2RANK_TEST_KEY").chat(MSG).content
    assert "Authorization" not in fake.requests[0][1]
