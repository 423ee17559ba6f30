"""Rationales written while the eval stage scores, kept for the run report.

    WORKDIR/eval/scores/NAME.rationales.jsonl
    {"user_id": str, "candidates": [K item ids], "rationales": [K texts]}     one line per recorded user

Which users: `sample_users(user_ids, n, seed)`, a seeded sample of the evaluated users (the report shows
the first N of the file, so `--users N` is a prefix of the same sample). While `recording(...)` is active,
`record(batch, ids, valid)` (called by the scorers that generate rationales: `run.scoring.score_split` and
`eval.pointwise.VerbalizedBatchScorer`) keeps the wanted users' generations; outside it `record` returns at
once without touching its arrays (RL validation, analyses, multi-host steps).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import pathlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

SUFFIX = ".rationales.jsonl"
DEFAULT_USERS = 32          # users recorded per scorer


def sample_users(user_ids: Sequence[str], n: int = DEFAULT_USERS, seed: int = 0) -> list[str]:
    """Up to `n` of `user_ids`, drawn without replacement with `seed` (the report's sample order)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(user_ids))[:n]
    return [str(user_ids[i]) for i in picked]


@dataclasses.dataclass
class _Log:
    wanted: tuple[str, ...]
    decode: Callable[[list[int]], str]
    rows: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


_ACTIVE: contextvars.ContextVar[_Log | None] = contextvars.ContextVar("r2rank_rationale_log", default=None)


@contextlib.contextmanager
def recording(path: pathlib.Path, user_ids: Sequence[str], decode: Callable[[list[int]], str]) -> Iterator[None]:
    """Records the rationales of `user_ids` generated inside the block; writes `path` (sample order) on a
    normal exit when any were recorded. `decode`: token ids -> text."""
    log = _Log(tuple(str(u) for u in user_ids), decode)
    token = _ACTIVE.set(log)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
    if log.rows:
        from r2rank_jax.data.benchmark import write_jsonl

        write_jsonl(path, (log.rows[u] for u in log.wanted if u in log.rows))


def active() -> bool:
    return _ACTIVE.get() is not None


def recorded(users: Sequence[str]) -> list[dict[str, Any]]:
    """The rows recorded so far for `users` (what a score journal keeps of one batch; [] when not recording)."""
    log = _ACTIVE.get()
    return [] if log is None else [log.rows[str(u)] for u in users if str(u) in log.rows]


def restore(rows: Sequence[dict[str, Any]]) -> None:
    """Puts back rows `recorded` returned (a batch replayed from a score journal)."""
    log = _ACTIVE.get()
    if log is not None:
        for row in rows:
            log.rows[row["user_id"]] = dict(row)


def record(batch: dict, ids: Any, valid: Any) -> None:
    """Keeps the generations of one pipeline batch: `ids` / `valid` `[U * K, T]` (row u * K + k, as the
    sampler's `generate_shared` returns them) for the batch's `user_ids [U]` and `candidate_ids [U, K]`."""
    log = _ACTIVE.get()
    if log is None:
        return
    users = [str(u) for u in batch["user_ids"]]
    if not set(users) & set(log.wanted):
        return
    ids, valid = np.asarray(ids), np.asarray(valid, bool)
    u_count, k = np.asarray(batch["labels"]).shape
    if ids.shape[0] != u_count * k:
        raise ValueError(f"record: {ids.shape[0]} generated rows for a batch of {u_count} users x {k} candidates")
    for u, user in enumerate(users):
        if user not in log.wanted or not batch["example_mask"][u]:
            continue
        real = [j for j in range(k) if batch["candidate_index"][u][j] >= 0]
        log.rows[user] = {"user_id": user, "candidates": [str(batch["candidate_ids"][u][j]) for j in real],
                          "rationales": [log.decode(ids[u * k + j][valid[u * k + j]].tolist()) for j in real]}
