"""SFT corpus parsing (prompt ids / prompt text / built from the benchmark), errors naming file:line,
exact iterator resume, and the metrics logger."""
import json
import pathlib

import numpy as np
import pytest

from r2rank_jax.data.errors import DataError
from r2rank_jax.data import benchmark
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig
from r2rank_jax.train import sft_data
from r2rank_jax.train.logging import MetricsLogger, read_metrics
from sft_fixtures import make_world, write_corpus

WORLD: dict = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("sftdata")
    bdir, tok = make_world(out / "world", num_users=40, history_len=2)
    corpus = out / "train.jsonl"
    write_corpus(bdir, tok, "train", corpus)
    return bdir, tok, corpus


def _write(path: pathlib.Path, objs) -> pathlib.Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def test_three_prompt_sources_give_the_same_ids(world, tmp_path):
    bdir, tok, corpus = world
    line = json.loads(corpus.read_text().splitlines()[0])
    builder = PromptBuilder(tok, benchmark.load_items(bdir), PromptConfig())
    text = tok.decode(line["prompt_ids"], skip_special_tokens=False)
    variants = [line, {**{k: v for k, v in line.items() if k != "prompt_ids"}, "prompt": text},
                {k: v for k, v in line.items() if k != "prompt_ids"}]
    path = _write(tmp_path / "c.jsonl", variants)
    examples = sft_data.load_corpus(path, tok, prompt_fn=sft_data.BenchmarkPrompts(bdir, "train", builder))
    assert [e.prompt_ids for e in examples] == [tuple(line["prompt_ids"])] * 3
    assert all(e.response_ids[-1] == tok.eos_token_id for e in examples)
    assert examples[0].where == f"{path}:1"


@pytest.mark.parametrize("obj, message", [
    ("{not json", "c.jsonl:2: invalid JSON"),
    ({"user_id": "1", "candidate": "2", "label": 1, "prompt_ids": [5]}, "c.jsonl:2: missing field 'response'"),
    ({"user_id": "1", "candidate": "2", "label": 3, "prompt_ids": [5], "response": "x"}, "'label' must be 0 or 1"),
    ({"user_id": "1", "candidate": "2", "label": 1, "prompt_ids": [5], "response": "maybe"}, "no <answer>"),
    ({"user_id": "1", "candidate": "2", "label": 1, "prompt_ids": [5],
      "response": "<answer>Not Recommend</answer>"}, "decides 'Not Recommend' but label=1"),
    ({"user_id": "1", "candidate": "2", "label": 0, "response": "<answer>Not Recommend</answer>"}, "no 'prompt_ids'"),
])
def test_malformed_lines_name_file_and_line(world, tmp_path, obj, message):
    _, tok, corpus = world
    path = _write(tmp_path / "c.jsonl", [corpus.read_text().splitlines()[0], obj])
    with pytest.raises(DataError, match=message):
        sft_data.load_corpus(path, tok)


def test_too_long_examples_error_or_are_skipped(world):
    _, tok, corpus = world
    examples = sft_data.load_corpus(corpus, tok)
    longest = max(len(e.prompt_ids) for e in examples)
    cfg = sft_data.SFTDataConfig(batch_size=2, prompt_buckets=(longest - 1,), response_buckets=(64,))
    with pytest.raises(DataError, match=r"train.jsonl:\d+: prompt of \d+ / response of \d+ tokens exceeds"):
        sft_data.fit_examples(examples, cfg)
    kept = sft_data.fit_examples(examples, sft_data.SFTDataConfig(prompt_buckets=(longest - 1,), response_buckets=(64,),
                                                                  too_long="skip"))
    assert 0 < len(kept) < len(examples)


def test_iterator_resumes_exactly_across_epochs(world):
    _, tok, corpus = world
    examples = sft_data.load_corpus(corpus, tok)
    cfg = sft_data.SFTDataConfig(batch_size=8, prompt_buckets=(192, 256), response_buckets=(64,), seed=4)
    per_epoch = len(examples) // 8
    it = sft_data.make_iterator(examples, cfg, tok.pad_token_id)
    for _ in range(per_epoch - 1):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(3)]  # crosses into the reshuffled second epoch
    it2 = sft_data.make_iterator(examples, cfg, tok.pad_token_id)
    it2.set_state(state)
    for a in want:
        b = next(it2)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_metrics_logger_writes_jsonl_and_tensorboard(tmp_path):
    with MetricsLogger(tmp_path, "sft", total_steps=3, progress=False) as log:
        log.log(1, {"loss": np.float32(2.5), "tokens": np.int32(7)})
        log.log(2, {"loss": float("nan")})
        log.log(2, {"eval_loss": 1.5}, stage="sft_eval")
    with MetricsLogger(tmp_path, "sft", progress=False, tensorboard=False) as log:  # a resumed run appends
        log.log(2, {"loss": 1.0})
    records = read_metrics(tmp_path, "sft")
    assert [(r["step"], r["loss"]) for r in records] == [(1, 2.5), (2, 1.0)]
    assert records[0]["tokens"] == 7 and records[0]["stage"] == "sft"
    assert read_metrics(tmp_path, "sft_eval")[0]["eval_loss"] == 1.5
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
