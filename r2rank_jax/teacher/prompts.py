"""Teacher-side prompt text: the answer-conditioned rationalization hint.

The student is trained on the plain self-reflective prompt (`data.prompt_text`); only the *teacher*
sees the hint, appended to the same user message. The hint gives the correct decision and asks the
teacher to reason as if it did not know it (STaR-style rationalization), so that a weak teacher can
still produce a rationale that ends in the right answer. Responses that give the hint away (quote
it or mention being told the answer) are rejected by `leaks_hint`.
"""
from __future__ import annotations

import re

from r2rank_jax.data.prompt_text import ANSWER_CLOSE, ANSWER_OPEN

RATIONALIZATION_HINT = (
    "\n\nNote for writing this example: the correct decision for this user and candidate is "
    "{answer}. Do not mention this note or that you were given the decision. Write the three parts "
    "as if you did not know it: reason only from the evidence in the user context and the candidate "
    "item, honestly weigh the evidence for and against, and let your reasoning arrive at the decision. "
    "End with {answer}."
)

# Phrases a rationale would only contain if it leaked the hint.
_LEAK_PATTERNS = re.compile(
    r"correct decision|note for writing|i was (told|given)|given (the )?(decision|answer|label)"
    r"|as if (i|we) did not know",
    re.IGNORECASE,
)


def answer_tag(decision: str) -> str:
    """``<answer>{decision}</answer>``."""
    return f"{ANSWER_OPEN}{decision}{ANSWER_CLOSE}"


def rationalization_message(user_message: str, decision: str) -> str:
    """The user message with the answer-conditioned hint for ``decision`` appended."""
    return user_message + RATIONALIZATION_HINT.format(answer=answer_tag(decision))


def leaks_hint(response: str) -> bool:
    """True when the response refers to the rationalization hint."""
    return _LEAK_PATTERNS.search(response) is not None
