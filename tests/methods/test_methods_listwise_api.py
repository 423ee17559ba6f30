"""`zero_shot_listwise_api`: the listwise baseline through an OpenAI-compatible endpoint.

Against our own server on loopback serving the base model of the session's debug run, it gives the local
`zero_shot_listwise` baseline's outputs and scores (debug_run's eval/scores); against a scripted fake endpoint,
its rankings are scored as the answers say, failed requests and unparsable answers are counted and scored as
the worst case, and the API key is sent but written nowhere."""
import dataclasses
import json
import pathlib
import shutil
import sys
import threading

import numpy as np
import pytest

from r2rank_jax.config import ConfigError, from_dict
from r2rank_jax.eval.listwise import UNPARSABLE
from r2rank_jax.methods.zero_shot_listwise_api import NAME, zero_shot_listwise_api
from r2rank_jax.run import builders
from r2rank_jax.run.context import RunContext, ScoreInput
from r2rank_jax.run.workdir import Workdir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "teacher"))
from fake_openai import FakeOpenAI  # noqa: E402

pytestmark = pytest.mark.slow  # the session's `all` run (debug_run) takes about a minute


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _score_input(debug_run, root, **api):
    """A workdir holding a copy of the run's data and config; the eval stage's ScoreInput on its users."""
    shutil.copytree(debug_run / "data", root / "data")
    (root / "eval" / "scores").mkdir(parents=True)
    cfg = from_dict(json.loads((debug_run / "config.json").read_text()))
    cfg = dataclasses.replace(cfg, listwise_api=dataclasses.replace(cfg.listwise_api, **api))
    wd = Workdir(root)
    tok = builders.tokenizer(cfg, wd, "eval")
    source = builders.source(wd, cfg.eval.split)
    return ScoreInput(RunContext(cfg, wd), tok, source, source.records[:cfg.eval.max_users]), cfg


def test_our_server_gives_the_local_listwise_baseline(debug_run, tmp_path):
    from r2rank_jax.serve.engine import Engine
    from r2rank_jax.serve.server import Server
    from r2rank_jax.teacher.generator import SamplerGenerator

    inp, cfg = _score_input(debug_run, tmp_path, model="debug", concurrency=3)
    model, _ = builders.model_from_checkpoint(cfg, inp.tokenizer, None, None)      # the local baseline's model
    engine = Engine(model, inp.tokenizer, SamplerGenerator(model, inp.tokenizer, eos_ids=builders.eos_ids(model, inp.tokenizer)),
                    name="debug", max_tokens_limit=512)
    server = Server(engine, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        api = dataclasses.replace(cfg.listwise_api, base_url=server.url + "/v1")
        inp = dataclasses.replace(inp, run=RunContext(dataclasses.replace(cfg, listwise_api=api), inp.wd))
        scores, extra = zero_shot_listwise_api(inp)
    finally:
        server.shutdown()
        server.server_close()
    local_scores = _lines(debug_run / "eval" / "scores" / "zero_shot_listwise.jsonl")
    local_out = _lines(debug_run / "eval" / "scores" / "zero_shot_listwise.outputs.jsonl")
    api_out = _lines(tmp_path / "eval" / "scores" / f"{NAME}.outputs.jsonl")
    assert [r["user_id"] for r in api_out] == [r["user_id"] for r in local_out] == [r.user_id for r in inp.records]
    # Chat replies drop the stop string the local sampler keeps; otherwise the same greedy text.
    assert [r["text"] for r in api_out] == [r["text"].removesuffix("</answer>") for r in local_out]
    assert [r["status"] for r in api_out] == [r["status"] for r in local_out]
    np.testing.assert_array_equal(scores, np.asarray([r["scores"] for r in local_scores]))
    local = json.loads((debug_run / "eval" / "results.json").read_text())["methods"]["zero_shot_listwise"]["parse"]
    assert extra["parse"] == local and extra["endpoint"]["failed_prompts"] == 0
    assert extra["endpoint"]["requests"] == len(inp.records)


def test_scripted_endpoint_rankings_failures_and_the_key(debug_run, tmp_path, monkeypatch):
    monkeypatch.setenv("R2RANK_TEST_LISTWISE_KEY", "sk-secret-123")
    inp, cfg = _score_input(debug_run, tmp_path, model="m", api_key_env="R2RANK_TEST_LISTWISE_KEY", concurrency=1,
                            max_attempts=2)
    records = inp.records[:4]
    inp = dataclasses.replace(inp, records=records)
    k = len(records[0].candidates)
    reverse = "<answer>" + " > ".join(str(j) for j in range(k, 0, -1)) + "</answer>"
    # user 0: "500" then ok (a retry); user 1: "500" twice (failed); user 2: no answer tag; user 3: ok.
    answers = iter([reverse, "I like them all.", reverse])
    with FakeOpenAI(["500", "ok", "500", "500", "ok", "ok"], responder=lambda m: next(answers)) as fake:
        api = dataclasses.replace(cfg.listwise_api, base_url=fake.base_url)
        inp = dataclasses.replace(inp, run=RunContext(dataclasses.replace(cfg, listwise_api=api), inp.wd))
        scores, extra = zero_shot_listwise_api(inp)
        sent = fake.requests
    # A full reversed ranking: the candidate listed last scores K, the first 1.
    np.testing.assert_array_equal(scores[0], np.arange(1, k + 1))
    np.testing.assert_array_equal(scores[3], np.arange(1, k + 1))
    for i in (1, 2):                      # the worst case: the positive last, everything else tied above it
        pos = records[i].candidates.index(records[i].positive)
        assert scores[i][pos] == -1 and np.all(np.delete(scores[i], pos) == 0)
    assert extra["parse"]["parsed"] == 2 and extra["parse"]["unparsable"] == 2
    assert extra["endpoint"] == {"requests": 6, "failed_prompts": 1, "failures_by_kind": {"http_5xx": 1}}
    assert all(h.get("Authorization") == "Bearer sk-secret-123" for _, h, _ in sent)
    body = sent[1][2]
    assert body["model"] == "m" and body["temperature"] == 0.0 and body["stop"] == ["</answer>"]
    assert body["messages"][-1]["role"] == "user" and "[1]" in body["messages"][-1]["content"]
    out = (tmp_path / "eval" / "scores" / f"{NAME}.outputs.jsonl").read_text()
    assert "sk-secret" not in out and "sk-secret" not in json.dumps(extra)
    assert [r["status"] for r in _lines(tmp_path / "eval" / "scores" / f"{NAME}.outputs.jsonl")][1:3] == [UNPARSABLE] * 2


def test_a_missing_endpoint_is_an_error_naming_the_field(debug_run, tmp_path):
    inp, _ = _score_input(debug_run, tmp_path, model="m")
    with pytest.raises(ConfigError, match="listwise_api.base_url"):
        zero_shot_listwise_api(inp)
