"""The synthetic world's oracle ceiling and the eval stage's baseline plan (names and extra arguments)."""
import json

import numpy as np
import pytest

from r2rank_jax import baselines
from r2rank_jax.baselines import oracle
from r2rank_jax.data.benchmark import load_items, load_split
from r2rank_jax.eval.report import random_expectation
from r2rank_jax.eval.score_files import align_scores, read_score_file


def test_oracle_scores_by_hand_and_ranks_far_above_random(tiny_world, tmp_path):
    out = tmp_path / "oracle.jsonl"
    assert oracle.main(["--benchmark", str(tiny_world), "--out", str(out), "--split", "test"]) == 0
    records = load_split(tiny_world, "test")
    scores, mask = align_scores(read_score_file(out), records)
    assert mask.all()
    items = load_items(tiny_world)
    r = records[0]
    n = len(r.history)
    weights = {"genre": np.log(25.0), "platform": np.log(12.0), "brand": np.log(4.0)}  # WorldConfig's taste weights
    by_hand = [sum(w * sum(items[h][a] == items[c][a] for h in r.history) / n for a, w in weights.items())
               for c in r.candidates]
    np.testing.assert_allclose(scores[0], by_hand, rtol=1e-6)
    meta = json.loads((tmp_path / "oracle.jsonl.meta.json").read_text())
    assert meta["metrics"]["ndcg@10"] > random_expectation(20)["ndcg@10"] + 0.3


def test_oracle_refuses_a_benchmark_without_the_world_attributes(tiny_world, tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    for f in tiny_world.iterdir():
        if f.is_file():
            (bench / f.name).write_bytes(f.read_bytes())
    lines = (bench / "items.jsonl").read_text().splitlines()
    (bench / "items.jsonl").write_text("\n".join(
        json.dumps({k: v for k, v in json.loads(x).items() if k != "genre"}) for x in lines) + "\n")
    with pytest.raises(ValueError, match="lack the attributes"):
        oracle.main(["--benchmark", str(bench), "--out", str(tmp_path / "o.jsonl")])


def test_baseline_plan_passes_extra_arguments_and_names_the_bad_field():
    assert baselines.plan(("random", "sasrec"), ("sasrec --epochs 60 --seed 3",)) == {
        "random": [], "sasrec": ["--epochs", "60", "--seed", "3"]}
    with pytest.raises(ValueError, match=r"eval.baselines: unknown baseline\(s\) \['sasrek'\]"):
        baselines.plan(("sasrek",))
    with pytest.raises(ValueError, match="eval.baselines: a baseline is listed twice"):
        baselines.plan(("random", "random"))
    # a known baseline that this run leaves out: its arguments are checked, then unused
    assert baselines.plan(("random",), ("lightgcn --epochs 3",)) == {"random": []}
    with pytest.raises(ValueError, match=r"entry 'lightgkn --epochs 3' must start with a known baseline \['random'"):
        baselines.plan(("random",), ("lightgkn --epochs 3",))
    with pytest.raises(ValueError, match=r"'lightgcn' may not set \['--out'\]"):
        baselines.plan(("random",), ("lightgcn --out x",))
    with pytest.raises(ValueError, match="two entries for 'sasrec'"):
        baselines.plan(("sasrec",), ("sasrec --epochs 1", "sasrec --epochs 2"))
    with pytest.raises(ValueError, match=r"may not set \['--split=valid'\]"):
        baselines.plan(("sasrec",), ("sasrec --split=valid",))


def test_every_known_baseline_is_a_module_with_a_cli():
    import importlib

    for name in baselines.KNOWN:
        assert callable(importlib.import_module(f"r2rank_jax.baselines.{name}").main)
