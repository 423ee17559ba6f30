"""Turning chronological user sequences into (history, positive) examples per split.

Two protocols:

- ``user`` (the paper's): every user with at least ``min_history`` items before the last one gives one
  example, positive = last item, history = the items before it; users are shuffled with the seed and
  divided 8:1:1 into train/valid/test (valid and test get ``round(n/10)`` users each).
- ``loo`` (leave-one-out): every user can give three examples, test = last item, valid = second to
  last, train = third to last, each with the items before it as history. An example is kept only
  when its history has at least ``min_history`` items, so short users may miss the earlier splits.

Histories are truncated to the last ``history_len`` items, oldest first.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from r2rank_jax.data.tables import UserSequence, sorted_ids

SPLITS: tuple[str, ...] = ("train", "valid", "test")
PROTOCOLS: tuple[str, ...] = ("user", "loo")


@dataclasses.dataclass(frozen=True)
class Example:
    """One ranking example before negatives are drawn."""

    user_id: str
    history: tuple[str, ...]
    positive: str


def _example(seq: UserSequence, target_pos: int, history_len: int) -> Example:
    start = max(0, target_pos - history_len)
    return Example(seq.user_id, seq.item_ids[start:target_pos], seq.item_ids[target_pos])


def user_split(
    sequences: Mapping[str, UserSequence], rng: np.random.Generator, history_len: int, min_history: int
) -> dict[str, list[Example]]:
    """Protocol ``user`` (see module docstring). Each split's examples are in canonical user order."""
    eligible = [u for u in sorted_ids(sequences) if len(sequences[u]) - 1 >= min_history]
    n = len(eligible)
    n_valid = n_test = int(round(n / 10))
    order = rng.permutation(n)
    bounds = {"train": (0, n - n_valid - n_test), "valid": (n - n_valid - n_test, n - n_test), "test": (n - n_test, n)}
    out: dict[str, list[Example]] = {}
    for split, (lo, hi) in bounds.items():
        chosen = np.sort(order[lo:hi])  # eligible is already in canonical order
        out[split] = [_example(sequences[eligible[i]], len(sequences[eligible[i]]) - 1, history_len) for i in chosen]
    return out


def loo_split(
    sequences: Mapping[str, UserSequence], history_len: int, min_history: int
) -> dict[str, list[Example]]:
    """Protocol ``loo`` (see module docstring)."""
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    offsets = {"test": 1, "valid": 2, "train": 3}
    for uid in sorted_ids(sequences):
        seq = sequences[uid]
        for split, offset in offsets.items():
            target_pos = len(seq) - offset
            if target_pos >= max(min_history, 0):
                out[split].append(_example(seq, target_pos, history_len))
    return out


def make_examples(
    sequences: Mapping[str, UserSequence],
    protocol: str,
    rng: np.random.Generator,
    history_len: int,
    min_history: int,
) -> dict[str, list[Example]]:
    """Dispatches to `user_split` or `loo_split`; returns split name -> examples."""
    if protocol == "user":
        return user_split(sequences, rng, history_len, min_history)
    if protocol == "loo":
        return loo_split(sequences, history_len, min_history)
    raise ValueError(f"split must be one of {PROTOCOLS}, got {protocol!r}")
