"""In-memory representation shared by all raw-data readers.

A `RawDataset` holds
- ``items``: item id -> `Item` (title plus optional text fields such as ``genres`` or ``store``),
- ``sequences``: user id -> `UserSequence`, the user's interactions oldest first (item ids, and the
  timestamps when the source has them; otherwise the order of the source row is the order),
- ``profiles``: user id -> profile text (empty when the source has no user side information),
- ``notes``: counts a reader wants reported (e.g. reviews dropped outside a time window).

Ids are strings exactly as they appear in the source. Every item referenced by a sequence is in
``items``: readers check that.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np


def id_sort_key(identifier: str) -> tuple[int, int, str]:
    """Sort key that orders numeric ids numerically ("2" < "10") and puts other ids after, as text."""
    if identifier.isdigit():
        return (0, int(identifier), identifier)
    return (1, 0, identifier)


def sorted_ids(ids: Iterable[str]) -> list[str]:
    """Ids in the canonical deterministic order (see `id_sort_key`)."""
    return sorted(ids, key=id_sort_key)


@dataclasses.dataclass(frozen=True)
class Item:
    """One item: its id, a non-empty title and optional text fields (name -> text)."""

    item_id: str
    title: str
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, str]:
        """``{"item_id", "title", **fields}`` as written to ``items.jsonl``."""
        out = {"item_id": self.item_id, "title": self.title}
        out.update({k: v for k, v in self.fields.items() if k not in out})
        return out


@dataclasses.dataclass(frozen=True)
class UserSequence:
    """One user's interactions, oldest first. ``timestamps`` (seconds) has the same length, or is None."""

    user_id: str
    item_ids: tuple[str, ...]
    timestamps: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclasses.dataclass
class RawDataset:
    """Items, per-user chronological sequences and optional user profiles (see module docstring)."""

    source: str
    items: dict[str, Item]
    sequences: dict[str, UserSequence]
    profiles: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: dict[str, int] = dataclasses.field(default_factory=dict)  # e.g. rows dropped by a reader

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())

    def interacted_items(self) -> list[str]:
        """Ids of the items that occur in at least one sequence, in canonical order."""
        seen: set[str] = set()
        for seq in self.sequences.values():
            seen.update(seq.item_ids)
        return sorted_ids(seen)

    def interaction_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat interaction table ``(user_ids, item_ids, order)``, each of shape (num_interactions,).

        Ids are numpy string arrays; ``order`` is the timestamp when known, else the position in the
        user's sequence (float64). Rows are grouped by user (canonical order), chronological within.
        """
        users: list[str] = []
        items: list[str] = []
        order: list[float] = []
        for uid in sorted_ids(self.sequences):
            seq = self.sequences[uid]
            users.extend([uid] * len(seq))
            items.extend(seq.item_ids)
            order.extend(seq.timestamps if seq.timestamps is not None else range(len(seq)))
        return np.array(users, dtype=str), np.array(items, dtype=str), np.array(order, dtype=np.float64)


class SequenceBuilder:
    """Collects ``(user, item, timestamp)`` rows in file order and groups them into `UserSequence`s.

    Within a user, rows are ordered by timestamp; ties keep file order (a stable sort), which is also
    the order when no timestamps are given.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[float, int, str]]] = {}
        self._n = 0
        self._has_time = True

    def add(self, user_id: str, item_id: str, timestamp: float | None) -> None:
        if timestamp is None:
            self._has_time = False
            timestamp = 0.0
        self._rows.setdefault(user_id, []).append((timestamp, self._n, item_id))
        self._n += 1

    def build(self) -> dict[str, UserSequence]:
        """User id (canonical order) -> chronological `UserSequence`."""
        out: dict[str, UserSequence] = {}
        for uid in sorted_ids(self._rows):
            rows = sorted(self._rows[uid])
            out[uid] = UserSequence(
                user_id=uid,
                item_ids=tuple(r[2] for r in rows),
                timestamps=tuple(r[0] for r in rows) if self._has_time else None,
            )
        return out
