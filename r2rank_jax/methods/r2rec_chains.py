"""R2Rec interaction chains: closed 4-cycles u → i → v → j → u on the train split's user–item graph.

The graph holds one edge per (user, item) of every train record's *history* (the train positives are
left out: they are the targets the model learns to rank). A chain of target user u is (i, v, j) with

    i ∈ H(u),  v ≠ u,  i ∈ H(v),  j ∈ H(v),  j ≠ i,  j ∈ H(u)

i.e. u liked i, a similar user v also liked i and j, and j leads back to u (closure). Chains are
ordered: (i, v, j) and (j, v, i) are two chains. The target user need not be in the graph (a test
user of a user-level split brings its own history H(u)); a graph user's own edges are excluded by v ≠ u.

Sampling: every chain of u is enumerated through its co-users (v with |H(u) ∩ H(v)| ≥ 2; user v
contributes m(m-1) chains for m = |H(u) ∩ H(v)|), and N distinct chains are drawn uniformly without
replacement by a generator seeded with (seed, crc32(user id)), so a user always gets the same chains.
A user with at most N chains gets all of them; a user with none (no co-user sharing two items) gets
an empty tuple, and its prompt says so (the fallback: the model reasons over the liked items alone).

Cost: items → users is indexed once; a user costs Σ_{i ∈ H(u)} |users(i)|. ``max_item_users`` caps
each item's user list (a fixed, seeded subset) so that very popular items do not dominate on large
graphs; with the cap at or above the largest item degree the sampler is exact.
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, order=True)
class Chain:
    user: str          # u, the target user
    item: str          # i ∈ H(u) ∩ H(v)
    other_user: str    # v ≠ u
    back_item: str     # j ∈ H(u) ∩ H(v), j ≠ i


class ChainGraph:
    """The train user–item graph (histories) with an items → users index."""

    def __init__(self, histories: Mapping[str, Sequence[str]], max_item_users: int = 0, seed: int = 0):
        self.users = sorted(histories)
        self.user_index = {u: n for n, u in enumerate(self.users)}
        self.item_sets = [frozenset(histories[u]) for u in self.users]
        by_item: dict[str, list[int]] = {}
        for n, items in enumerate(self.item_sets):
            for i in items:
                by_item.setdefault(i, []).append(n)
        rng = np.random.default_rng(seed)
        self.item_users: dict[str, np.ndarray] = {}
        for i in sorted(by_item):
            users = np.asarray(by_item[i], np.int64)
            if max_item_users and len(users) > max_item_users:
                users = np.sort(rng.choice(users, max_item_users, replace=False))
            self.item_users[i] = users

    @classmethod
    def from_records(cls, records, max_item_users: int = 0, seed: int = 0) -> ChainGraph:
        return cls({r.user_id: r.history for r in records}, max_item_users, seed)

    def co_users(self, user: str, history: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """[(v, sorted H(u) ∩ H(v))] for every co-user v ≠ u sharing at least two items, sorted by v."""
        own = frozenset(history)
        lists = [self.item_users[i] for i in sorted(own) if i in self.item_users]
        if not lists:
            return []
        ids, counts = np.unique(np.concatenate(lists), return_counts=True)
        me = self.user_index.get(user, -1)
        out = []
        for n in ids[(counts >= 2) & (ids != me)]:
            shared = tuple(sorted(own & self.item_sets[n]))
            if len(shared) >= 2:
                out.append((self.users[n], shared))
        return out

    def all_chains(self, user: str, history: Sequence[str]) -> list[Chain]:
        """Every chain of `user` (with `history` as H(u)), in enumeration order."""
        return [Chain(user, i, v, j) for v, shared in self.co_users(user, history)
                for i in shared for j in shared if j != i]

    def sample(self, user: str, history: Sequence[str], n: int, seed: int = 0) -> tuple[Chain, ...]:
        """N distinct chains drawn uniformly (all of them when there are at most N; module docstring)."""
        if n < 0:
            raise ValueError(f"number of chains must be >= 0, got {n}")
        groups = self.co_users(user, history)
        sizes = np.array([len(s) * (len(s) - 1) for _, s in groups], np.int64)
        total = int(sizes.sum()) if len(sizes) else 0
        if total == 0 or n == 0:
            return ()
        rng = np.random.default_rng([seed, zlib.crc32(user.encode())])
        picks = np.arange(total) if total <= n else np.sort(rng.choice(total, n, replace=False))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        out = []
        for p in picks:
            g = int(np.searchsorted(starts, p, side="right") - 1)
            v, shared = groups[g]
            r, m = int(p - starts[g]), len(shared)
            a, b = divmod(r, m - 1)
            out.append(Chain(user, shared[a], v, shared[b + (b >= a)]))
        return tuple(out)
