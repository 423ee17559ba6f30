"""Which (user, candidate) pairs the teacher is asked about, and their prompts.

Per train-split user: the positive plus ``negatives_per_user`` negatives drawn from the user's saved
candidate list with a generator seeded by (seed, user id), so a user's pairs do not depend on which
other users are selected. Prompts come from `PromptBuilder` (same wording, item text and token budget
as SFT/RL/eval), built for a record that keeps only the chosen candidates.
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.prompts import PromptBuilder
from r2rank_jax.teacher.base import Pair


def chosen_candidates(record: Record, negatives_per_user: int, seed: int) -> tuple[str, ...]:
    """The positive first, then the seeded choice of negatives (in candidate-list order)."""
    negatives = [c for c in record.candidates if c != record.positive]
    n = min(negatives_per_user, len(negatives))
    rng = np.random.default_rng([seed, zlib.crc32(record.user_id.encode("utf-8"))])
    picked = sorted(rng.choice(len(negatives), size=n, replace=False).tolist()) if n else []
    return (record.positive, *(negatives[i] for i in picked))


def user_pairs(builder: PromptBuilder, record: Record, negatives_per_user: int, seed: int) -> list[Pair]:
    """The pairs of one user with their prompts (the history is cut to the builder's budget)."""
    sub = dataclasses.replace(record, candidates=chosen_candidates(record, negatives_per_user, seed))
    prompts = builder.build(sub)
    who = f"user {record.user_id!r}: "
    profile = builder.profile(sub)
    history = [builder.item_text(i, who) for i in prompts.history]
    pairs = []
    for k, candidate in enumerate(sub.candidates):
        message = pt.pointwise_message(builder.config.variant, profile, history, builder.item_text(candidate, who))
        pairs.append(Pair(record=record, candidate=candidate, label=prompts.labels[k], history=prompts.history,
                          user_message=message,
                          prompt=prompts.prefix_text + prompts.suffix_texts[k]))
    return pairs


def iter_pairs(builder: PromptBuilder, records: Sequence[Record], negatives_per_user: int, seed: int,
               max_users: int | None = None) -> Iterator[Pair]:
    """Pairs of the first ``max_users`` records (all when None), user by user."""
    if negatives_per_user < 0:
        raise ValueError(f"negatives_per_user must be >= 0, got {negatives_per_user}")
    for record in records[:max_users]:
        yield from user_pairs(builder, record, negatives_per_user, seed)
