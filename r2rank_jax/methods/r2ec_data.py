"""R²ec's prompts and batches: a user-only prompt (history titles, asking for reasoning about the user's
preferences, no candidate) and one short prompt per item, whose last-token hidden state is the item
embedding.

A batch of U users (numpy; layout of the pipeline batch that `train.rollout` consumes, with the
G reasonings of a user in place of the K candidate suffixes):

- ``prefix_tokens``/``prefix_positions`` `[U, P]`: the user prompt minus its last token, left padded;
  ``prefix_lengths`` `[U]`;
- ``suffix_tokens`` `[U, G, 1]`: the prompt's last token, once per reasoning (so the G reasonings
  share the prefix in the sampler and in the teacher-forced pass); ``suffix_lengths`` `[U, G]` = 1;
  ``labels``/``candidate_index`` `[U, G]` zeros (unused by R²ec);
- ``example_mask`` `[U]` (False on rows padding a short last batch);
- ``item_tokens``/``item_positions`` `[U, K, T]`: the candidates' item prompts, left padded to T;
- ``target`` `[U, K]` float32 (1 on the positive), ``cand_mask`` `[U, K]` bool, ``user_ids`` `[U]`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.pipeline import bucket
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig, PromptTooLongError, fit_oldest_first
from r2rank_jax.sampling.sampler import pad_left

USER_INSTRUCTIONS = (
    "You are a recommendation assistant. Analyze the user's interaction history below and reason about "
    "the user's preferences: what kind of items they like and what they are likely to want next. "
    "Write a short analysis.\n"
)
ITEM_MESSAGE = "Describe this item for a recommender system.\nItem: {item}"


class R2ecPrompts:
    """Tokenized user and item prompts of one prepared benchmark (`items`: items.jsonl by id)."""

    def __init__(self, tokenizer: Any, items: Mapping[str, Mapping[str, str]], prefix_buckets: Sequence[int],
                 item_tokens: int, max_prompt_tokens: int | None = None, item_fields: Sequence[str] = ()):
        self.builder = PromptBuilder(tokenizer, items, PromptConfig(variant="cot", item_fields=tuple(item_fields)))
        self.pad_id = tokenizer.pad_token_id or 0
        self.prefix_buckets = tuple(prefix_buckets)
        limit = self.prefix_buckets[-1] + 1            # the prefix drops the prompt's last token
        self.limit = limit if max_prompt_tokens is None else min(limit, max_prompt_tokens)
        self.item_tokens = item_tokens
        self._items: dict[str, list[int]] = {}

    def user_ids(self, record: Record) -> list[int]:
        """The rendered user prompt's ids; the oldest history items go first when over the budget."""
        who = f"user {record.user_id!r}: "
        history = [self.builder.item_text(i, who) for i in record.history]
        profile = self.builder.profile(record)

        def make(h):
            text = self.builder.render(USER_INSTRUCTIONS + pt.context_line(profile, h).rstrip("\n"))
            return text, self.builder.encode([text])[0]

        _, (_, ids) = fit_oldest_first(history, make, self.limit, on_fail=lambda n: PromptTooLongError(
            f"{who}the R²ec user prompt needs {n} tokens even with an empty history, over {self.limit}"))
        return ids

    def item_ids(self, item_id: str) -> list[int]:
        ids = self._items.get(item_id)
        if ids is None:
            text = self.builder.render(ITEM_MESSAGE.format(item=self.builder.item_text(item_id)))
            ids = self.builder.encode([text])[0]
            if len(ids) > self.item_tokens:
                raise PromptTooLongError(f"item {item_id!r}: its R²ec item prompt has {len(ids)} tokens, over "
                                         f"r2ec.item_tokens={self.item_tokens}")
            self._items[item_id] = ids
        return ids

    def batch(self, records: Sequence[Record], group: int, batch_users: int | None = None) -> dict[str, np.ndarray]:
        """The batch of `records` (padded to `batch_users` rows, copies of row 0 with example_mask False)."""
        u = batch_users or len(records)
        if not 0 < len(records) <= u:
            raise ValueError(f"need 1..{u} records for a batch, got {len(records)}")
        rows = list(records) + [records[0]] * (u - len(records))
        prompts = [self.user_ids(r) for r in rows]
        p = bucket(max(len(x) - 1 for x in prompts), self.prefix_buckets, "R²ec user prompt")
        prefix_tokens, prefix_positions = pad_left([x[:-1] for x in prompts], p, self.pad_id)
        k = max(len(r.candidates) for r in rows)
        item_tokens = np.full((u, k, self.item_tokens), self.pad_id, np.int32)
        item_positions = np.full((u, k, self.item_tokens), -1, np.int32)
        target = np.zeros((u, k), np.float32)
        cand_mask = np.zeros((u, k), bool)
        for i, r in enumerate(rows):
            cands = list(r.candidates) + [r.candidates[0]] * (k - len(r.candidates))
            item_tokens[i], item_positions[i] = pad_left([self.item_ids(c) for c in cands], self.item_tokens,
                                                         self.pad_id)
            cand_mask[i, :len(r.candidates)] = True
            target[i, :len(r.candidates)] = [float(c == r.positive) for c in r.candidates]
        return {
            "prefix_tokens": prefix_tokens, "prefix_positions": prefix_positions,
            "prefix_lengths": np.array([len(x) - 1 for x in prompts], np.int32),
            "suffix_tokens": np.array([[[x[-1]]] * group for x in prompts], np.int32),
            "suffix_lengths": np.ones((u, group), np.int32),
            "labels": np.zeros((u, group), np.int32), "candidate_index": np.zeros((u, group), np.int32),
            "example_mask": np.arange(u) < len(records),
            "item_tokens": item_tokens, "item_positions": item_positions, "target": target, "cand_mask": cand_mask,
            "user_ids": np.array([r.user_id for r in rows]),
        }


class UserBatches:
    """Endless shuffled batches of `batch_users` training records (reshuffled every epoch from `seed`);
    its state (epoch, position) is saved with the checkpoints, so a resumed run sees the same batches."""

    def __init__(self, records: Sequence[Record], prompts: R2ecPrompts, batch_users: int, group: int, seed: int):
        if len(records) < batch_users:
            raise ValueError(f"r2ec.batch_users={batch_users} exceeds the {len(records)} training users")
        self.records, self.prompts, self.u, self.g, self.seed = records, prompts, batch_users, group, seed
        self.epoch, self.pos = 0, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.pos + self.u > len(self.records):
            self.epoch, self.pos = self.epoch + 1, 0
        order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.records))
        chosen = [self.records[i] for i in order[self.pos:self.pos + self.u]]
        self.pos += self.u
        return self.prompts.batch(chosen, self.g)

    def get_state(self) -> bytes:
        return json.dumps({"epoch": self.epoch, "pos": self.pos}).encode()

    def set_state(self, state: bytes) -> None:
        s = json.loads(state)
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])
