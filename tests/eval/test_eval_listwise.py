"""Zero-shot listwise baseline: the answer parser (tags, repeats, out-of-range numbers, garbage), the
score rule (ranked, then unranked tied, unparsable = positive last) against hand-computed NDCG, and
the batching of `score_listwise` with a scripted generator."""
import math

import numpy as np
import pytest

from r2rank_jax.data.benchmark import Record, load_items, load_split
from r2rank_jax.data.prompts import PromptBuilder
from r2rank_jax.data.tokenizer import train_world_tokenizer
from r2rank_jax.eval.listwise import (PARSED, PARTIAL, UNPARSABLE, ParseStats, parse_listwise, ranking_scores,
                                      score_listwise)
from r2rank_jax.eval.per_user import per_user_metrics


@pytest.mark.parametrize("text, ranked, status, repeats, out_of_range", [
    ("<answer>3 > 1 > 2</answer>", (2, 0, 1), PARSED, 0, 0),
    ("reasoning... <answer> [2] > [3] > [1] </answer>", (1, 2, 0), PARSED, 0, 0),
    ("<ANSWER>2>1>3</Answer>", (1, 0, 2), PARSED, 0, 0),
    ("<answer>3 > 1</answer>", (2, 0), PARTIAL, 0, 0),
    ("<answer>3 > 3 > 1 > 3</answer>", (2, 0), PARTIAL, 2, 0),            # repeats ignored
    ("<answer>7 > 2 > 0 > 1 > 3</answer>", (1, 0, 2), PARSED, 0, 2),      # 7 and 0 out of range
    ("<answer>2 > 1 > 3 > 2</answer>", (1, 0, 2), PARSED, 1, 0),
    ("<answer>9 > 12 > 4</answer>", (), UNPARSABLE, 0, 3),                # nothing in range
    ("The best is 3, then 1 and 2.", (), UNPARSABLE, 0, 0),               # missing tag: no fallback
    ("3 > 1 > 2", (), UNPARSABLE, 0, 0),
    ("<answer>Recommend</answer>", (), UNPARSABLE, 0, 0),
    ("<answer></answer>", (), UNPARSABLE, 0, 0),
    ("", (), UNPARSABLE, 0, 0),
    ("s<mendf Harbor\x00\ufffd lror K>e 2", (), UNPARSABLE, 0, 0),          # garbage
    ("quoted <answer>1 > 2 > 3</answer> then <answer>2 > 3</answer>", (1, 2), PARTIAL, 0, 0),  # last tag wins
    ("ranking: <answer>2 > 3", (1, 2), PARTIAL, 0, 0),                    # unclosed final tag (token limit)
])
def test_parse_listwise(text, ranked, status, repeats, out_of_range):
    parse = parse_listwise(text, 3)
    assert (parse.ranked, parse.status, parse.repeats, parse.out_of_range) == (ranked, status, repeats, out_of_range)


def test_parse_maps_listed_positions_through_the_order():
    # [1] shows candidate 2, [2] candidate 0, [3] candidate 1.
    assert parse_listwise("<answer>3 > 1 > 2</answer>", 3, order=(2, 0, 1)).ranked == (1, 2, 0)
    with pytest.raises(ValueError, match="permutation"):
        parse_listwise("<answer>1</answer>", 3, order=(0, 0, 1))


def _ndcg10(scores, positive):
    return float(per_user_metrics(np.asarray([scores]), np.asarray([positive]))["ndcg@10"][0])


def test_scores_of_a_full_ranking_follow_it():
    parse = parse_listwise("<answer>2 > 4 > 1 > 3</answer>", 4)
    np.testing.assert_array_equal(ranking_scores(parse, 4, positive_index=3), [2, 4, 1, 3])
    assert _ndcg10(ranking_scores(parse, 4, 3), 3) == pytest.approx(1 / math.log2(3))   # positive 2nd


def test_unranked_candidates_follow_the_ranked_ones_tied():
    parse = parse_listwise("<answer>2 > 4</answer>", 4)
    scores = ranking_scores(parse, 4, positive_index=0)
    np.testing.assert_array_equal(scores, [0, 4, 0, 3])
    # Positive (index 0) unranked, tied with index 2 at positions 3 and 4: expected discount.
    assert _ndcg10(scores, 0) == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / 2)
    assert _ndcg10(scores, 3) == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("k", [5, 20])
def test_unparsable_is_the_worst_case(k):
    parse = parse_listwise("no answer at all", k)
    for positive in (0, k // 2, k - 1):
        scores = ranking_scores(parse, k, positive)
        metrics = per_user_metrics(np.asarray([scores]), np.asarray([positive]))
        # The positive is ranked last: position k.
        assert metrics["ndcg@10"][0] == pytest.approx(1 / math.log2(k + 1) if k <= 10 else 0.0)
        assert metrics["mrr"][0] == pytest.approx(1 / k)
        assert metrics["hr@1"][0] == 0.0


def test_parse_stats():
    stats = ParseStats()
    for text in ("<answer>1 > 2 > 3</answer>", "<answer>1 > 1</answer>", "<answer>5</answer>", "x"):
        stats.add(parse_listwise(text, 3))
    d = stats.as_dict()
    assert (d["parsed"], d["partial"], d["unparsable"], d["total"]) == (1, 1, 2, 4)
    assert (d["with_repeats"], d["with_out_of_range"]) == (1, 1)
    assert d["parse_rate"] == 0.25 and d["any_parse_rate"] == 0.5


def test_score_listwise_with_a_scripted_generator(eval_world, tmp_path):
    """The 'model' always answers "1 > 2 > ... > K" (pure position bias): the score of a candidate is
    set by where it is listed, and the last batch is padded to the batch size."""
    tok = train_world_tokenizer(eval_world, tmp_path / "tok")
    records = load_split(eval_world, "test")[:5]
    builder = PromptBuilder(tok, load_items(eval_world))
    k = len(records[0].candidates)
    calls = []

    def generate(prompts):
        calls.append(len(prompts))
        assert all(isinstance(t, int) for t in prompts[0])
        return ["reasoning <answer>" + " > ".join(str(j) for j in range(1, k + 1)) + "</answer>"] * len(prompts)

    rng = np.random.default_rng(0)
    orders = [rng.permutation(k) for _ in records]
    out = score_listwise(records, builder, generate, orders=orders, batch_size=2)
    assert calls == [2, 2, 2]
    assert out.stats.as_dict()["parsed"] == 5
    for i, order in enumerate(orders):
        # listed position j (0-based) shows candidate order[j] and gets score K - j.
        expected = np.empty(k)
        expected[order] = k - np.arange(k)
        np.testing.assert_array_equal(out.scores[i], expected)
    with pytest.raises(ValueError, match="different numbers of candidates"):
        short = Record("u", (), records[0].candidates[:3], records[0].candidates[0])
        score_listwise([records[0], short], builder, generate)
