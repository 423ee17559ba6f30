"""R2Rec's GRPO rewards and group-relative advantages (pure NumPy; shapes in docstrings).

An output is ``Step 1: ...`` lines (the interaction-of-thought) followed by the ranking
``<answer>3 > 1 > ...</answer>`` (`r2rank_jax.eval.listwise`). With the prompt's chains labelled
``C1..Cn`` and its liked items ``H1..Hm``:

- **reasoning-step reward** r_step ∈ [0, 1]: the steps are the lines starting with ``Step <n>:``
  (before the answer tag); a step is *valid* when it cites at least one label that exists in the
  prompt: a chain ``C<c>`` with 1 ≤ c ≤ n, or, for a user without chains, a liked item ``H<h>`` with
  1 ≤ h ≤ m. r_step = valid steps / steps, and 0 when there is no step at all.
- **rank-correctness reward** r_rank ∈ [0, 1]: 1 / (1-based rank of the positive in the parsed
  ranking); 0 when the positive is not ranked (a partial ranking without it) or the output is unparsable.
- total: r = 1 · r_step + 2 · r_rank (the paper's weights; `RewardWeights`).

Advantages (GRPO): within each user's group of G outputs, A = (r − mean_G r) / (std_G r + eps)
(population std); a group with equal rewards gets A = 0.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from r2rank_jax.data.prompt_text import ANSWER_OPEN
from r2rank_jax.eval.listwise import UNPARSABLE, parse_listwise

_STEP = re.compile(r"^\s*Step\s*\d+\s*:", re.IGNORECASE | re.MULTILINE)
_CHAIN_REF = re.compile(r"\bC(\d+)\b")
_ITEM_REF = re.compile(r"\bH(\d+)\b")


@dataclasses.dataclass(frozen=True)
class RewardWeights:
    step: float = 1.0
    rank: float = 2.0


def reasoning_steps(text: str) -> list[str]:
    """The ``Step <n>:`` lines of an output (text before the first answer tag), in order."""
    head = text.split(ANSWER_OPEN, 1)[0]
    return [line.strip() for line in head.splitlines() if _STEP.match(line)]


def step_reward(text: str, num_chains: int, num_items: int) -> float:
    """Fraction of valid steps (module docstring); 0 without steps."""
    steps = reasoning_steps(text)
    if not steps:
        return 0.0
    if num_chains > 0:
        pattern, limit = _CHAIN_REF, num_chains
    else:
        pattern, limit = _ITEM_REF, num_items
    valid = sum(any(1 <= int(m.group(1)) <= limit for m in pattern.finditer(s)) for s in steps)
    return valid / len(steps)


def rank_reward(text: str, num_candidates: int, positive_index: int, order=None) -> float:
    """1 / rank of the positive in the parsed ranking; 0 when unranked or unparsable."""
    parse = parse_listwise(text, num_candidates, order)
    if parse.status == UNPARSABLE or positive_index not in parse.ranked:
        return 0.0
    return 1.0 / (parse.ranked.index(positive_index) + 1)


def total_reward(text: str, num_chains: int, num_items: int, num_candidates: int, positive_index: int,
                 weights: RewardWeights = RewardWeights(), order=None) -> tuple[float, float, float]:
    """(total, r_step, r_rank) of one output."""
    s = step_reward(text, num_chains, num_items)
    r = rank_reward(text, num_candidates, positive_index, order)
    return weights.step * s + weights.rank * r, s, r


def group_advantages(rewards: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """rewards `[U, G]` → z-scored advantages `[U, G]` within each user's group (module docstring)."""
    rewards = np.asarray(rewards, np.float64)
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [U, G], got shape {rewards.shape}")
    mean = rewards.mean(axis=1, keepdims=True)
    std = rewards.std(axis=1, keepdims=True)
    centered = rewards - mean
    return np.divide(centered, std + eps, out=np.zeros_like(centered), where=std > 0)
