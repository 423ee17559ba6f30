"""The wording of the R2Rank prompts (DESIGN.md, paper Figure 2) and the text of items and users.

Three user messages share one shape: instructions, then the user context, then the candidate(s):

- ``cot`` (the self-reflective prompt)::

      <COT_INSTRUCTIONS>
      User Context: {user_profile}, {user_history}
      Candidate Item: {item_text}

- ``no_cot``: the same, but the requirements ask for the decision tag only;
- ``listwise``: all K candidates numbered ``[1]..[K]`` in one prompt, asking for a ranking of numbers.

The user context is one line (newlines in titles or profiles are folded into spaces), and it ends
with the newline that precedes ``Candidate Item:``. `prompts.PromptBuilder` splits the rendered chat
text right after that newline.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence

RECOMMEND = "Recommend"
NOT_RECOMMEND = "Not Recommend"
DECISIONS: tuple[str, str] = (RECOMMEND, NOT_RECOMMEND)
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

VARIANTS: tuple[str, ...] = ("cot", "no_cot")

_DECISION_LINE = f"{ANSWER_OPEN}{RECOMMEND}{ANSWER_CLOSE} or {ANSWER_OPEN}{NOT_RECOMMEND}{ANSWER_CLOSE}."

COT_INSTRUCTIONS = (
    "You are a recommendation assistant. Analyze the user's history in depth and decide whether to "
    "recommend the candidate item.\n"
    "Requirements: Generate a response with the following three parts in order:\n"
    "#Initial reasoning: thoroughly analyze relevant evidence from **USER CONTEXT** and **CANDIDATE ITEM**.\n"
    "#Self-check: identify mistakes, missing evidence, uncertainties, or over-weighted signals in the "
    "initial reasoning.\n"
    "#Final conclusion and suggestion: produce a concise final rationale and decision.\n"
    f"Finally output: {_DECISION_LINE}\n"
)

NO_COT_INSTRUCTIONS = (
    "You are a recommendation assistant. Analyze the user's history and decide whether to recommend "
    "the candidate item.\n"
    "Requirements: Do not explain. Output only the decision: "
    f"{_DECISION_LINE}\n"
)

LISTWISE_INSTRUCTIONS = (
    "You are a recommendation assistant. Analyze the user's history in depth and rank the candidate "
    "items by how likely the user is to interact with each of them next.\n"
    "Requirements: Consider every candidate. Finally output the numbers of all {k} candidates, most "
    "likely first, separated by \" > \", for example: {ANSWER_OPEN}2 > 1 > 3{ANSWER_CLOSE}.\n"
)

INSTRUCTIONS = {"cot": COT_INSTRUCTIONS, "no_cot": NO_COT_INSTRUCTIONS}

CONTEXT_LABEL = "User Context: "
CANDIDATE_LABEL = "Candidate Item: "
LISTWISE_CANDIDATES_LABEL = "Candidate Items:"
HISTORY_LABEL = "interacted items (oldest first): "
EMPTY_HISTORY = "no interactions yet"

_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """HTML entities unescaped (``&amp;`` -> ``&``; Games-6k titles carry them) and all whitespace,
    newlines included, folded into single spaces, so that every item and profile is one line."""
    return _WHITESPACE.sub(" ", html.unescape(text)).strip()


def history_text(item_texts: Sequence[str]) -> str:
    """``interacted items (oldest first): 1. A; 2. B`` (or `EMPTY_HISTORY`)."""
    if not item_texts:
        return EMPTY_HISTORY
    return HISTORY_LABEL + "; ".join(f"{i}. {t}" for i, t in enumerate(item_texts, start=1))


def context_line(profile: str | None, item_texts: Sequence[str]) -> str:
    """``User Context: {user_profile}, {user_history}\\n``; without a profile the ``, `` goes too."""
    history = history_text(item_texts)
    body = f"{profile}, {history}" if profile else history
    return f"{CONTEXT_LABEL}{body}\n"


def pointwise_message(variant: str, profile: str | None, history: Sequence[str], candidate: str) -> str:
    """The user message of a pointwise prompt (``cot`` or ``no_cot``)."""
    if variant not in INSTRUCTIONS:
        raise ValueError(f"prompt variant must be one of {VARIANTS}, got {variant!r}")
    return INSTRUCTIONS[variant] + context_line(profile, history) + CANDIDATE_LABEL + candidate


def candidate_part(candidate: str) -> str:
    """The per-candidate tail of a pointwise user message (what follows the context line)."""
    return CANDIDATE_LABEL + candidate


def listwise_message(profile: str | None, history: Sequence[str], candidates: Sequence[str]) -> str:
    """The user message of the listwise prompt: candidates numbered ``[1]`` .. ``[K]`` in the given order."""
    listed = "\n".join(f"[{i}] {c}" for i, c in enumerate(candidates, start=1))
    instructions = LISTWISE_INSTRUCTIONS.format(k=len(candidates), ANSWER_OPEN=ANSWER_OPEN, ANSWER_CLOSE=ANSWER_CLOSE)
    return instructions + context_line(profile, history) + LISTWISE_CANDIDATES_LABEL + "\n" + listed


def answer_strings() -> tuple[str, ...]:
    """The decision strings a model is asked to emit (for tokenizer training and tests)."""
    return tuple(f"{ANSWER_OPEN}{d}{ANSWER_CLOSE}" for d in DECISIONS)
