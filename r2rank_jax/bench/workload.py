"""Real benchmark workloads: R2Rank prompts for users of the shared Video Games data.

Users with at least `history_len + 1` interactions: the last item is the positive, the `history_len`
before it the history, plus K − 1 seeded negatives from outside the user's sequence.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.negatives import NegativeSampler
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig, UserPrompts
from r2rank_jax.data.sources import read_source

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def games_spec(data_dir: str | os.PathLike | None = None) -> str:
    root = pathlib.Path(data_dir or os.environ.get("R2RANK_SHARED_DATA", DEFAULT_DATA))
    base = root / "amazon18_video_games" / "Games-6k"
    if not base.with_suffix(".item").is_file():
        raise FileNotFoundError(f"shared Video Games data not found under {root} (set R2RANK_SHARED_DATA or --data_dir)")
    return f"recbole:{base}"


def games_user_prompts(tokenizer, num_users: int, num_candidates: int = 20, history_len: int = 20, seed: int = 0,
                       data_dir: str | os.PathLike | None = None, config: PromptConfig = PromptConfig()) -> list[UserPrompts]:
    """`num_users` users' K self-reflective prompts (shared prefix ids + per-candidate suffix ids)."""
    dataset = read_source(games_spec(data_dir))
    rng = np.random.default_rng(seed)
    eligible = [u for u, s in dataset.sequences.items() if len(s.item_ids) > history_len]
    chosen = [eligible[i] for i in sorted(rng.choice(len(eligible), size=num_users, replace=False))]
    sampler = NegativeSampler(dataset.interacted_items())
    items = {i: {"item_id": i, "title": it.title} for i, it in dataset.items.items()}
    builder = PromptBuilder(tokenizer, items, config)
    out = []
    for user in chosen:
        seq = dataset.sequences[user].item_ids
        negatives = sampler.sample(rng, seq, num_candidates - 1, who=f"user {user!r}")
        candidates = [seq[-1], *negatives]
        order = rng.permutation(num_candidates)
        record = Record(user_id=user, history=tuple(seq[-history_len - 1:-1]),
                        candidates=tuple(candidates[j] for j in order), positive=seq[-1])
        out.append(builder.build(record))
    return out
