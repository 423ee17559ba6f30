"""Random and popularity baselines: seeded, train-split-only, CLIs writing score files the eval accepts."""
import json
from collections import Counter

import numpy as np
import pytest

from r2rank_jax.baselines import common, popularity
from r2rank_jax.baselines import random as random_baseline
from r2rank_jax.data.benchmark import load_split
from r2rank_jax.eval.evaluate import mean_metrics
from r2rank_jax.eval.report import random_expectation
from r2rank_jax.eval.score_files import align_scores, read_score_file


def test_random_is_seeded_and_near_the_random_expectation(tiny_world):
    records = load_split(tiny_world, "train")
    a = random_baseline.random_scores(records, seed=0)
    np.testing.assert_array_equal(a, random_baseline.random_scores(records, seed=0))
    assert not np.array_equal(a, random_baseline.random_scores(records, seed=1))
    many = records * 50  # 8000 rows: the mean is within a few standard errors of the expectation
    ndcg = mean_metrics(many, random_baseline.random_scores(many, seed=3))["ndcg@10"]
    assert ndcg == pytest.approx(random_expectation(20)["ndcg@10"], abs=0.01)


def test_popularity_counts_train_interactions_only(tiny_world):
    train, test = load_split(tiny_world, "train"), load_split(tiny_world, "test")
    index = common.ItemIndex.from_benchmark(tiny_world)
    counts = Counter(x for r in train for x in r.history + (r.positive,))
    scores = popularity.popularity_scores(train, test, index)
    expected = [[counts.get(c, 0) for c in r.candidates] for r in test]
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.parametrize("module", [random_baseline, popularity])
def test_cli_writes_a_score_file_for_the_split(module, tiny_world, tmp_path):
    out = tmp_path / "scores.jsonl"
    assert module.main(["--benchmark", str(tiny_world), "--out", str(out), "--split", "valid"]) == 0
    records = load_split(tiny_world, "valid")
    scores, mask = align_scores(read_score_file(out), records)
    assert scores.shape == (len(records), 20) and mask.all()
    meta = json.loads((tmp_path / "scores.jsonl.meta.json").read_text())
    assert meta["benchmark"]["split"] == "valid" and set(meta["metrics"]) >= {"ndcg@10", "hr@10", "mrr"}
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) >= {"user_id", "scores", "candidates", "positive", "ndcg@10", "mrr"}


def test_sequences_and_padding():
    assert common.left_pad([[1, 2, 3], [4], []], 2).tolist() == [[2, 3], [0, 4], [0, 0]]
    index = common.ItemIndex(("a", "b", "c"))
    assert index.encode(["c", "a"]) == [3, 1]
    with pytest.raises(KeyError, match="'z' is not in the benchmark's items.jsonl"):
        index.encode(["z"])
    assert common.item_counts([[1, 1, 3], [0, 3]], 3).tolist() == [0, 2, 0, 2]
