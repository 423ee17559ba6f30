"""Parsing model outputs: the pointwise decision and the listwise ranking.

Both look at the **last** ``<answer>...</answer>`` in the text (tags case-insensitive, whitespace
inside tolerated): a rationale may quote the instruction ``<answer>Recommend</answer> or
<answer>Not Recommend</answer>`` before giving its own answer. A final ``<answer>`` that was never
closed (generation stopped at end of sequence) counts when nothing but its content follows it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND

_CLOSED = re.compile(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", re.IGNORECASE | re.DOTALL)
_OPEN = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.IGNORECASE)
_DECORATION = " \t\r\n*_`'\".:!"
_NUMBER = re.compile(r"\d+")


def last_answer(text: str) -> str | None:
    """Content of the last answer tag (see module docstring), or None when there is none."""
    closed = list(_CLOSED.finditer(text))
    opens = list(_OPEN.finditer(text))
    if opens:
        last_open = opens[-1]
        if not closed or last_open.start() > closed[-1].start():
            tail = text[last_open.end():]
            if not _CLOSE.search(tail):
                return tail  # unclosed final tag
    if not closed:
        return None
    return _OPEN.split(closed[-1].group(1))[-1]  # "<answer>a <answer>b</answer>" -> "b"


def parse_decision(text: str) -> str | None:
    """``"Recommend"``, ``"Not Recommend"`` or None (no answer tag, or an answer that is neither).

    Case, inner whitespace (``not   recommend``), markdown emphasis, quotes and a final period are
    tolerated; anything else (``Maybe``, ``Recommend or Not Recommend``) is None.
    """
    content = last_answer(text)
    if content is None:
        return None
    words = " ".join(content.strip(_DECORATION).split()).lower()
    if words == "recommend":
        return RECOMMEND
    if words == "not recommend":
        return NOT_RECOMMEND
    return None


def _numbers_in_range(text: str, num_candidates: int) -> list[int]:
    """1-based numbers in ``text`` that are in ``1..num_candidates``, first occurrences only."""
    seen: list[int] = []
    for match in _NUMBER.finditer(text):
        n = int(match.group())
        if 1 <= n <= num_candidates and n not in seen:
            seen.append(n)
    return seen


def parse_ranking(
    text: str, num_candidates: int, order: Sequence[int] | None = None, *, complete: bool = True
) -> list[int] | None:
    """Candidate indices (0-based, best first) from a listwise answer such as ``3 > [1] > 2``.

    The numbers are the 1-based positions in the listed order; ``order[j]`` is the candidate shown at
    position ``j + 1`` (default: listed in candidate order), so the result indexes the candidates
    themselves. Out-of-range numbers and repeats are ignored. With ``complete`` the candidates the
    answer left out follow in listed order, giving a permutation of ``range(num_candidates)``.
    Without an answer tag, the last line holding at least two valid numbers is used. None when no
    valid number is found.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    order = list(range(num_candidates)) if order is None else list(order)
    if sorted(order) != list(range(num_candidates)):
        raise ValueError(f"order must be a permutation of range({num_candidates}), got {order}")
    content = last_answer(text)
    if content is None:
        lines = [ln for ln in text.splitlines() if len(_numbers_in_range(ln, num_candidates)) >= 2]
        content = lines[-1] if lines else ""
    listed = _numbers_in_range(content, num_candidates)
    if not listed:
        return None
    if complete:
        listed += [n for n in range(1, num_candidates + 1) if n not in listed]
    return [order[n - 1] for n in listed]
