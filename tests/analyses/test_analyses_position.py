"""Position sensitivity: the placement arithmetic and the analysis against hand-computed values with
scripted scorers, and the real check: R2Rank scores of a (random, tiny) model do not move when the
candidates are reordered."""
import math

import numpy as np
import pytest

from r2rank_jax.analyses.common import ModelContext
from r2rank_jax.analyses.position import back_to_original, placed, placement, position_sensitivity
from r2rank_jax.data.benchmark import Record
from r2rank_jax.eval.score_files import read_score_file

K = 20


def _records(n: int = 3) -> list[Record]:
    out = []
    for i in range(n):
        cands = tuple(f"u{i}c{j}" for j in range(K))
        out.append(Record(f"u{i}", ("h",), cands, cands[0]))  # positive listed first
    return out


def test_placement_moves_only_the_positive():
    r = Record("u", (), ("a", "b", "P", "c"), "P")
    assert placement(r, 1) == (2, 0, 1, 3)
    assert placement(r, 4) == (0, 1, 3, 2)
    assert placement(r, 3) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="outside 1..4"):
        placement(r, 5)
    moved, perms = placed([r], 1)
    assert moved[0].candidates == ("P", "a", "b", "c") and moved[0].positive == "P"
    scores = np.array([[10.0, 20, 30, 40]])   # scores of the moved list
    np.testing.assert_array_equal(back_to_original(scores, perms), [[20, 30, 10, 40]])


def test_a_list_position_scorer_moves_and_a_content_scorer_does_not():
    records = _records()

    def first_listed_best(recs):   # a listwise model with pure position bias
        return np.tile(K - np.arange(K, dtype=float), (len(recs), 1))

    def by_content(recs):          # a pointwise model: each score depends on the candidate alone
        return np.array([[float(hash(c) % 1000) for c in r.candidates] for r in recs])

    summary, arrays = position_sensitivity({"listed": first_listed_best, "content": by_content}, records)
    listed = summary["methods"]["listed"]
    # The positive at position p: NDCG@10 = 1/log2(p + 1) for p <= 10, else 0.
    assert listed["ndcg@10"] == pytest.approx({"original": 1.0, "1": 1.0, "10": 1 / math.log2(11), "20": 0.0})
    # Moving the positive from position 1 to p changes its score by p - 1 (the others shift by <= 1).
    assert listed["max_abs_change"] == pytest.approx({"1": 0.0, "10": 9.0, "20": 19.0})
    assert not listed["invariant"]
    content = summary["methods"]["content"]
    assert content["max_abs_change_overall"] == 0.0 and content["invariant"]
    assert len(set(content["ndcg@10"].values())) == 1
    np.testing.assert_array_equal(arrays["content"]["20"], arrays["content"]["original"])


@pytest.mark.slow  # uses the shared workdir fixture (prepare + eval)
def test_r2rank_scores_are_invariant_to_candidate_order(analysis_workdir):
    """Real model (random weights, random non-zero head): ≤ 1e-5 under every placement, non-trivial scores,
    and the benchmark-order scores equal the eval stage's score file (same scoring path)."""
    ctx = ModelContext.load(analysis_workdir)
    records = ctx.records
    summary, arrays = position_sensitivity({"r2rank": ctx.scorer("r2rank")}, records, (1, 10, 20))
    r2 = summary["methods"]["r2rank"]
    assert r2["max_abs_change_overall"] <= 1e-5 and r2["invariant"]
    original = arrays["r2rank"]["original"]
    assert np.all(np.ptp(original, axis=1) > 1e-2), "scores tie: the invariance check would be vacuous"
    saved = read_score_file(analysis_workdir / "eval" / "scores" / "r2rank.jsonl")
    assert list(saved.user_ids) == [r.user_id for r in records]
    np.testing.assert_allclose(original, np.array(saved.scores), atol=1e-5)
