"""Stratification math (edges, tier assignment, per-tier means) against hand-computed values on tiny
fake score files; the cold-start count and the history shuffles; no model."""
import math

import numpy as np
import pytest

from r2rank_jax.analyses import strata
from r2rank_jax.analyses.cold_start import positive_train_counts
from r2rank_jax.analyses.history_order import history_order, shuffled_histories, summarize
from r2rank_jax.analyses.stratified import score_paths
from r2rank_jax.data.benchmark import Record
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.score_files import write_score_file


def test_quantile_edges_and_assignment():
    values = [1, 2, 3, 4, 5, 6]
    # linear quantiles: 1/3 -> 1 + 5/3 = 2.667, 2/3 -> 1 + 10/3 = 4.333
    np.testing.assert_allclose(strata.quantile_edges(values, 3), [8 / 3, 13 / 3])
    np.testing.assert_array_equal(strata.assign_tiers(values, strata.quantile_edges(values, 3)), [0, 0, 1, 1, 2, 2])
    # Upper-inclusive edges: 5 is in tier 0, 20 in tier 1.
    np.testing.assert_array_equal(strata.assign_tiers([0, 5, 6, 20, 21], [5, 20]), [0, 0, 1, 1, 2])
    # Tied quantiles merge: the median of [0, 0, 0, 0, 5] is 0, one edge, two tiers.
    assert strata.quantile_edges([0, 0, 0, 0, 5], 3) == [0.0]
    assert strata.tier_labels([5, 20]) == ["<= 5", "(5, 20]", "> 20"]
    assert strata.parse_edges("2, 10") == [2.0, 10.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        strata.parse_edges("10,2")


def _record(i: int, history_len: int, positive_at: int = 0) -> Record:
    cands = tuple(f"i{i}_{j}" for j in range(3))
    return Record(f"u{i}", tuple(f"h{j}" for j in range(history_len)), cands, cands[positive_at])


def test_stratify_per_tier_means_on_fake_score_files(tmp_path):
    records = [_record(0, 1), _record(1, 2), _record(2, 10), _record(3, 12)]
    # method "a": positive first for users 0, 1 and last for users 2, 3; "b": positive second for all.
    a = np.array([[3.0, 2, 1], [3, 2, 1], [1, 2, 3], [1, 2, 3]])
    b = np.array([[2.0, 3, 1]] * 4)
    write_score_file(tmp_path / "a.jsonl", records, a)
    write_score_file(tmp_path / "b.jsonl", records, b)
    (tmp_path / "a.full.jsonl").write_text("")  # baselines' full-split files are not methods
    paths = score_paths(tmp_path, None)
    assert sorted(paths) == ["a", "b"]
    per_user, _ = evaluate_score_files(paths, records)
    lengths = [len(r.history) for r in records]
    result = strata.stratify(per_user, lengths, [5], reference="b")
    t0, t1 = result["tiers"]
    assert (t0["num_users"], t1["num_users"]) == (2, 2)
    assert (t0["value_min"], t0["value_max"], t1["value_min"], t1["value_max"]) == (1, 2, 10, 12)
    second = 1 / math.log2(3)
    assert t0["methods"]["a"]["ndcg@10"] == pytest.approx(1.0)
    assert t1["methods"]["a"]["ndcg@10"] == pytest.approx(1 / math.log2(4))
    assert t0["methods"]["a"]["mrr"] == pytest.approx(1.0) and t1["methods"]["a"]["mrr"] == pytest.approx(1 / 3)
    assert t0["methods"]["b"]["ndcg@10"] == pytest.approx(second) == t1["methods"]["b"]["ndcg@10"]
    assert t0["methods"]["b"]["hr@1"] == 0.0 and t0["methods"]["a"]["hr@1"] == 1.0
    # CIs bracket the mean (identical users: a point interval); Wilcoxon only for the non-reference method.
    assert t0["methods"]["a"]["ndcg@10_ci"] == pytest.approx([1.0, 1.0])
    assert "ndcg@10_p_value" in t0["methods"]["a"] and "ndcg@10_p_value" not in t0["methods"]["b"]
    md = strata.render_markdown("T", "what", result)
    assert "| <= 5 | 1–2 | 2 | 1.0000 | 0.6309 |" in md


def test_empty_tier_is_reported_without_metrics():
    per_user = {"m": {k: np.array([0.5, 0.5]) for k in strata.METRICS}}
    result = strata.stratify(per_user, [1, 2], [10, 20])
    assert [t["num_users"] for t in result["tiers"]] == [2, 0, 0]
    assert result["tiers"][1]["methods"]["m"] == {}


def test_positive_train_counts_by_hand():
    train = [Record("t1", ("a", "b"), ("c", "x"), "c"), Record("t2", ("a",), ("b", "y"), "b")]
    evaluated = [Record("e1", (), ("a", "z"), "a"), Record("e2", (), ("c", "z"), "c"),
                 Record("e3", ("a",), ("d", "z"), "d")]
    # a: two histories; b: one history + one positive; c: one positive; d: never (test history not counted)
    np.testing.assert_array_equal(positive_train_counts(evaluated, train), [2, 1, 0])


def test_history_shuffles_are_seeded_permutations():
    records = [_record(i, 8) for i in range(3)]
    s0, s0_again, s1 = shuffled_histories(records, 0), shuffled_histories(records, 0), shuffled_histories(records, 1)
    assert s0 == s0_again and s0 != s1
    for r, shuffled in zip(records, s0):
        assert sorted(shuffled.history) == sorted(r.history) and shuffled.candidates == r.candidates
    assert any(s.history != r.history for s, r in zip(s0, records))


def test_history_order_summary():
    assert summarize([0.2, 0.4, 0.9]) == pytest.approx({"mean": 0.5, "std": float(np.std([0.2, 0.4, 0.9], ddof=1)),
                                                         "min": 0.2, "max": 0.9})
    records = [_record(i, 6, positive_at=i % 3) for i in range(6)]

    def order_blind(recs):   # scores from the *set* of history items: shuffles change nothing
        return np.array([[float(len(set(r.history))) + (c == r.positive) for c in r.candidates] for r in recs])

    def order_reader(recs):  # positive first only when the history is in its original order
        return np.array([[float(c == r.positive) * (1 if list(r.history) == sorted(r.history) else -1)
                          for c in r.candidates] for r in recs])

    out = history_order({"blind": order_blind, "reader": order_reader}, records, num_shuffles=4, seed=3)
    assert out["methods"]["blind"]["shuffles"] == [1.0] * 4 and out["methods"]["blind"]["std"] == 0.0
    reader = out["methods"]["reader"]
    assert reader["original"] == 1.0
    # Shuffled: the positive is last of 3 for every user whose history moved.
    moved = [np.mean([s.history != r.history for s, r in zip(shuffled_histories(records, k, 3), records)])
             for k in range(4)]
    expected = [(1 - f) * 1.0 + f * (1 / math.log2(4)) for f in moved]
    assert reader["shuffles"] == pytest.approx(expected)
    assert reader["max"] == pytest.approx(max(expected)) and reader["min"] == pytest.approx(min(expected))
