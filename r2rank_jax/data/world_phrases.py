"""Stock reasoning sentences of the synthetic world: part of its tokenizer's training text
(`data.tokenizer`), so the tiny model's vocabulary covers the teacher's phrasing."""
from __future__ import annotations

REASONING_PHRASES: tuple[str, ...] = (
    "The user's history shows a strong preference for this genre and platform.",
    "Most of the items the user interacted with are on the same platform as the candidate item.",
    "The candidate matches the user's favorite genre but not the usual platform.",
    "The brand of the candidate appears several times in the history.",
    "There is little evidence that the user would enjoy this item; it does not match the history.",
    "Self-check: the initial reasoning may over-weight a single recent item; the overall pattern is clearer.",
    "Final conclusion: the candidate fits the user's taste, so I recommend it.",
    "Final conclusion: the candidate does not fit the user's taste, so I do not recommend it.",
)
