"""Answer parsers on tricky strings."""
from __future__ import annotations

import pytest

from r2rank_jax.data.prompts import parse_decision, parse_ranking


@pytest.mark.parametrize("text, expected", [
    ("<answer>Recommend</answer>", "Recommend"),
    ("<answer>Not Recommend</answer>", "Not Recommend"),
    ("reasoning...\n<answer>  not   RECOMMEND \n</answer>", "Not Recommend"),
    ("<ANSWER>recommend</Answer>", "Recommend"),
    ("< answer >**Recommend**.</ answer >", "Recommend"),
    # The rationale quotes the instruction first: the last answer wins.
    ("I must output <answer>Recommend</answer> or <answer>Not Recommend</answer>. ... <answer>Recommend</answer>",
     "Recommend"),
    ("<answer>Recommend</answer> on second thought <answer>Not Recommend</answer>", "Not Recommend"),
    ("<answer>Not Recommend</answer> trailing words", "Not Recommend"),
    ("<answer>a <answer>Recommend</answer>", "Recommend"),
    ("final: <answer>Not Recommend", "Not Recommend"),  # generation stopped before the closing tag
    ("<answer>Recommend</answer> then <answer>Not Rec", None),  # truncated last answer
    ("<answer>Maybe</answer>", None),
    ("<answer>Recommend or Not Recommend</answer>", None),
    ("<answer></answer>", None),
    ("I recommend it. Recommend", None),
    ("", None),
])
def test_parse_decision(text, expected):
    assert parse_decision(text) == expected


@pytest.mark.parametrize("text, k, expected", [
    ("<answer>3 > 1 > 2</answer>", 3, [2, 0, 1]),
    ("<answer>[2] > [3] > [1]</answer>", 3, [1, 2, 0]),
    ("<answer>2, 2, 9, 0, 1</answer>", 3, [1, 0, 2]),  # repeats and out-of-range ignored, 3 appended
    ("quote <answer>1 > 2 > 3</answer> then <answer>3 > 2 > 1</answer>", 3, [2, 1, 0]),
    ("The ranking:\n12 > 3 > 1\nthanks", 20, [11, 2, 0] + [i for i in range(20) if i not in (11, 2, 0)]),
    ("no numbers here", 5, None),
    ("<answer>none</answer>", 5, None),
])
def test_parse_ranking(text, k, expected):
    assert parse_ranking(text, k) == expected


def test_parse_ranking_maps_listed_positions_to_candidates():
    # Candidates shown in the order (2, 0, 1): "[1]" is candidate 2, "[2]" candidate 0, "[3]" candidate 1.
    assert parse_ranking("<answer>1 > 3 > 2</answer>", 3, order=(2, 0, 1)) == [2, 1, 0]
    assert parse_ranking("<answer>3</answer>", 3, order=(2, 0, 1), complete=False) == [1]
    with pytest.raises(ValueError, match="permutation"):
        parse_ranking("<answer>1</answer>", 3, order=(0, 1, 1))
