"""Resumable scoring: each scored batch is appended to a journal, so an interrupted eval continues.

    WORKDIR/eval/scores/NAME.journal.jsonl
    line 1:  {"journal": 1, "fingerprint": str}
    then:    {"section": int, "batch": int, "users": [U user ids], "payload": {...}}   one line per scored batch

While `journaling(path, fingerprint, resume)` is active, the batch loops that score a split
(`run.scoring.score_batches`, `eval.listwise.score_listwise`, R²ec's and R2Rec's scorers) open one
`Section` each, in call order, and for every batch either replay the journal's payload (`Section.get`:
same section, batch index and users) or score it and append the payload (`Section.put`, flushed at
once). Outside it there is no journal and nothing is written (RL validation, analyses).

The fingerprint names what the scores depend on (the run's config, the method, the checkpoints it reads,
`stages.evaluate`); a journal with another fingerprint, or any journal without `resume`, is discarded and
started again. A last line cut short by a kill is dropped. What a batch replays is exactly what it wrote:
for greedy scoring that is what it would compute again; a sampling scorer's random stream is kept in step
by `score_batches` (it splits the key for every batch, replayed or not).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

VERSION = 1
SUFFIX = ".journal.jsonl"


@dataclasses.dataclass
class Journal:
    path: pathlib.Path
    fingerprint: str
    entries: dict[tuple[int, int], dict[str, Any]]     # (section, batch) -> {"users": [...], "payload": {...}}
    replayed: int = 0
    sections: int = 0

    def section(self) -> "Section":
        self.sections += 1
        return Section(self, self.sections - 1)

    def _append(self, obj: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclasses.dataclass
class Section:
    """One batch loop's entries in the journal (its index = the order in which the loops opened)."""
    journal: Journal | None
    index: int = 0

    def get(self, batch: int, users: Sequence[str]) -> dict[str, Any] | None:
        """The payload batch `batch` wrote with these `users`, or None (not journaled: score it)."""
        if self.journal is None:
            return None
        entry = self.journal.entries.get((self.index, batch))
        if entry is None or entry["users"] != [str(u) for u in users]:
            return None
        self.journal.replayed += 1
        return entry["payload"]

    def put(self, batch: int, users: Sequence[str], payload: dict[str, Any]) -> None:
        if self.journal is None:
            return
        users = [str(u) for u in users]
        self.journal.entries[(self.index, batch)] = {"users": users, "payload": payload}
        self.journal._append({"section": self.index, "batch": batch, "users": users, "payload": payload})


_ACTIVE: contextvars.ContextVar[Journal | None] = contextvars.ContextVar("r2rank_score_journal", default=None)


def _load(path: pathlib.Path, fingerprint: str) -> dict[tuple[int, int], dict[str, Any]] | None:
    """The entries of a journal written with `fingerprint`; None when it is missing, unreadable or another's."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").split("\n")
    try:
        header = json.loads(lines[0])
    except (json.JSONDecodeError, IndexError):
        return None
    if header != {"journal": VERSION, "fingerprint": fingerprint}:
        return None
    entries = {}
    for line in lines[1:]:
        try:
            obj = json.loads(line)
            entries[(int(obj["section"]), int(obj["batch"]))] = {"users": list(obj["users"]), "payload": obj["payload"]}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            break                       # an empty or cut last line (a kill mid-write): the rest is rescored
    return entries


@contextlib.contextmanager
def journaling(path: str | os.PathLike[str], fingerprint: str, resume: bool) -> Iterator[Journal]:
    """Activates the journal at PATH for the block: with `resume`, the batches a journal of the same
    fingerprint holds are replayed; otherwise (or when it is another's) the journal starts empty."""
    path = pathlib.Path(path)
    entries = _load(path, fingerprint) if resume else None
    if entries is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"journal": VERSION, "fingerprint": fingerprint}) + "\n", encoding="utf-8")
        entries = {}
    else:
        text = path.read_text(encoding="utf-8")
        if not text.endswith("\n"):         # drop a cut last line: the next append starts a line of its own
            path.write_text(text[:text.rfind("\n") + 1], encoding="utf-8")
    journal = Journal(path, fingerprint, entries)
    token = _ACTIVE.set(journal)
    try:
        yield journal
    finally:
        _ACTIVE.reset(token)


def section() -> Section:
    """The next batch loop's section of the active journal (a no-op section when none is active)."""
    journal = _ACTIVE.get()
    return journal.section() if journal is not None else Section(None)


def replay_or_compute(section: Section, batch: int, users: Sequence[str],
                      compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The payload batch `batch` journaled with these `users`, else `compute()`'s, journaled: for batch loops
    that are not `score_batches` (one greedy generation per user: R²ec, R2Rec)."""
    payload = section.get(batch, users)
    if payload is None:
        payload = compute()
        section.put(batch, users, payload)
    return payload


def encode_floats(rows: Any) -> list[list[float | None]]:
    """Rows of floats for JSON: -inf (padded candidates) as None."""
    return [[None if x == -math.inf else float(x) for x in row] for row in rows]


def decode_floats(rows: Sequence[Sequence[float | None]]) -> list[list[float]]:
    return [[-math.inf if x is None else float(x) for x in row] for row in rows]
