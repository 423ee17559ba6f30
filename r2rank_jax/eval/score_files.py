"""Per-user score files: one JSON line per user, so methods can be compared without rerunning them.

    {"user_id": str, "candidates": [K item ids], "positive": item id, "scores": [K floats],
     "ndcg@1": ..., "ndcg@5": ..., "ndcg@10": ..., "hr@1": ..., "hr@5": ..., "hr@10": ..., "mrr": ...}

`scores[k]` belongs to `candidates[k]` (the benchmark's candidate order); higher = better. The metric
fields are informative (expected-value tie policy); evaluation recomputes them from the scores.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from r2rank_jax.data.benchmark import Record, write_jsonl
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.textio import iter_jsonl
from r2rank_jax.eval.per_user import per_user_metrics


@dataclasses.dataclass(frozen=True)
class ScoreFile:
    """A parsed score file, in file order. `lines[i]` is the 1-based line of user i."""

    path: pathlib.Path
    user_ids: tuple[str, ...]
    candidates: tuple[tuple[str, ...], ...]
    positives: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...]
    lines: tuple[int, ...]


def positive_indices(records: Sequence[Record]) -> np.ndarray:
    """`[N]` int index of each record's positive within its candidates."""
    return np.array([r.candidates.index(r.positive) for r in records], dtype=np.int64)


def padded(records: Sequence[Record], rows: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged per-user rows -> scores `[N, K_max]` float64 and mask `[N, K_max]` bool."""
    width = max((len(r.candidates) for r in records), default=0)
    scores = np.zeros((len(records), width))
    mask = np.zeros((len(records), width), dtype=bool)
    for i, row in enumerate(rows):
        scores[i, : len(row)] = row
        mask[i, : len(row)] = True
    return scores, mask


def write_score_file(path: str | os.PathLike[str], records: Sequence[Record], scores: np.ndarray) -> pathlib.Path:
    """Writes scores `[N, K]` (row i = records[i]'s candidates, in order) with per-user metrics."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] != len(records):
        raise ValueError(f"{len(records)} records but scores for {scores.shape[0]} users")
    rows = [scores[i, : len(r.candidates)] for i, r in enumerate(records)]
    full, mask = padded(records, rows)
    values = per_user_metrics(full, positive_indices(records), mask=mask)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def lines():
        for i, record in enumerate(records):
            obj = {"user_id": record.user_id, "candidates": list(record.candidates),
                   "positive": record.positive, "scores": [float(x) for x in rows[i]]}
            obj |= {name: float(v[i]) for name, v in values.items()}
            yield obj

    write_jsonl(path, lines())
    return path


def read_score_file(path: str | os.PathLike[str]) -> ScoreFile:
    """Parses and checks a score file (fields present, K finite scores per user, no repeated user)."""
    path = pathlib.Path(path)
    users, cands, positives, scores, lines = [], [], [], [], []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        for key in ("user_id", "candidates", "positive", "scores"):
            if key not in obj:
                raise DataError(path, lineno, f"missing field {key!r}")
        user = str(obj["user_id"])
        if user in seen:
            raise DataError(path, lineno, f"user {user!r} repeated (first on line {seen[user]})")
        seen[user] = lineno
        row = obj["scores"]
        if not isinstance(row, list) or len(row) != len(obj["candidates"]):
            raise DataError(path, lineno, f"user {user!r}: 'scores' must be a list of {len(obj['candidates'])} numbers")
        for k, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise DataError(path, lineno, f"user {user!r}: scores[{k}] = {x!r} is not a finite number")
        users.append(user)
        cands.append(tuple(obj["candidates"]))
        positives.append(obj["positive"])
        scores.append(tuple(float(x) for x in row))
        lines.append(lineno)
    if not users:
        raise DataError(path, None, "no users in score file")
    return ScoreFile(path, tuple(users), tuple(cands), tuple(positives), tuple(scores), tuple(lines))


def write_subset(path: str | os.PathLike[str], records: Sequence[Record], out: str | os.PathLike[str]) -> pathlib.Path:
    """Score file PATH (a whole split, e.g. a baseline's) cut to `records`, in their order, written to OUT."""
    score_file = read_score_file(path)
    by_user = dict(zip(score_file.user_ids, score_file.scores))
    missing = [r.user_id for r in records if r.user_id not in by_user]
    if missing:
        raise DataError(pathlib.Path(path), None, f"users {missing[:3]} ({len(missing)} in all) are not in the file")
    return write_score_file(out, records, np.asarray([by_user[r.user_id] for r in records]))


def align_scores(score_file: ScoreFile, records: Sequence[Record], split: str = "the split") -> tuple[np.ndarray, np.ndarray]:
    """Scores `[N, K]` and mask `[N, K]` in `records` order; raises `DataError` naming the file, line and
    user when the file does not cover exactly the benchmark's users with the same candidate lists."""
    path = score_file.path
    where = {u: i for i, u in enumerate(score_file.user_ids)}
    wanted = {r.user_id for r in records}
    for i, user in enumerate(score_file.user_ids):
        if user not in wanted:
            raise DataError(path, score_file.lines[i], f"user {user!r} is not in the benchmark's {split}")
    rows = []
    for record in records:
        i = where.get(record.user_id)
        if i is None:
            raise DataError(path, None, f"user {record.user_id!r} of the benchmark's {split} is missing "
                                        f"({len(score_file.user_ids)} users in the file, {len(records)} in {split})")
        if score_file.candidates[i] != record.candidates:
            raise DataError(path, score_file.lines[i], f"user {record.user_id!r}: candidates differ from the benchmark's "
                                                       f"({list(score_file.candidates[i])[:5]}... vs {list(record.candidates)[:5]}...)")
        if score_file.positives[i] != record.positive:
            raise DataError(path, score_file.lines[i], f"user {record.user_id!r}: positive {score_file.positives[i]!r} "
                                                       f"differs from the benchmark's {record.positive!r}")
        rows.append(score_file.scores[i])
    return padded(records, rows)
