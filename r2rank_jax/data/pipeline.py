"""Grain input pipeline: prepared split -> tokenized, statically padded batches of U users x K candidates.

    source = SplitSource(benchmark_dir, "train")
    builder = PromptBuilder(tokenizer, source.items, PromptConfig(...))
    it = make_iterator(source, builder, PipelineConfig(batch_users=4, seed=0))
    batch = next(it); state = it.get_state()  # ... later: it2 = make_iterator(...); it2.set_state(state)

Order of operations (all on a `grain.MapDataset`, so every batch is a pure function of its index):
``shuffle(seed)`` (grain reseeds every epoch with ``seed + epoch``) -> tokenize one user
(`PromptBuilder.build`) -> batch U users and pad (`collate`; with ``shard_count`` n > 1: collate the
global batch of U * n users and keep host ``shard_index``'s U rows, `host_shard.HostSlice`) ->
``repeat(num_epochs)``. Batches never straddle epochs (grain batches each epoch separately). Then
``to_iter_dataset`` and, with ``worker_count > 0``, ``mp_prefetch`` into that many worker processes,
which receive the pickled builder (tokenizer included) and do the tokenization. The iterator's
``get_state()``/``set_state()`` is grain's: a restored iterator yields exactly the batches the
uninterrupted one would have.

A batch (numpy; U = batch_users, K = candidates per user, P/S = bucket lengths):

- ``prefix_tokens`` `[U, P]` int32, left-padded with the pad id; ``prefix_positions`` `[U, P]` int32,
  ``0..n-1`` on the real tokens, -1 on pads (the decoder's convention);
- ``suffix_tokens`` `[U, K, S]` int32, right-padded; ``suffix_positions`` `[U, K, S]` int32,
  continuing from the prefix's real length ``n, n+1, ...``, -1 on pads;
- ``prefix_lengths`` `[U]`, ``suffix_lengths`` `[U, K]` int32;
- ``labels`` `[U, K]` int32 (1 = the positive), ``candidate_index`` `[U, K]` int32 (row of
  ``items.jsonl``, -1 on padding rows), ``candidate_ids`` `[U, K]` and ``user_ids`` `[U]` (str);
- ``example_mask`` `[U]` bool (False on rows that pad a last, short batch when ``drop_remainder`` is
  off), ``history_dropped`` `[U]` int32 (oldest history items the token budget cut; see
  `count_cuts`).

P is the smallest of ``prefix_buckets`` holding the batch's longest prefix and S likewise from
``suffix_buckets``, so a jitted step compiles once per bucket pair; `fit_to_buckets` sets the prompt
budget so that every prompt fits the largest buckets. For multi-host training pass the host's
block of the global batch (`r2rank_jax.distributed.host_batch_shard(mesh)`) as ``shard_index, shard_count``
and the per-host ``batch_users``.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from r2rank_jax import buckets as buckets_
from r2rank_jax.data import benchmark
from r2rank_jax.data.host_shard import HostSlice
from r2rank_jax.data.prompts import BudgetStats, PromptBuilder, PromptConfig, UserPrompts

Batch = dict[str, np.ndarray]


class SplitSource:
    """Random-access source (grain's ``RandomAccessDataSource``) over a prepared split: index -> `Record`."""

    def __init__(self, directory: str | os.PathLike[str], split: str, verify_hash: bool = False):
        self.directory = os.fspath(directory)
        self.split = split
        self.records = benchmark.load_split(directory, split, verify_hash=verify_hash)
        self.items = benchmark.load_items(directory)
        self.item_index = {item_id: i for i, item_id in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> benchmark.Record:
        return self.records[index]

    def __repr__(self) -> str:
        return f"SplitSource({self.directory!r}, {self.split!r}, {len(self)} records)"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    batch_users: int = 4  # U
    prefix_buckets: tuple[int, ...] = (256, 384, 512)
    suffix_buckets: tuple[int, ...] = (64,)
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = None  # None: repeat forever
    drop_remainder: bool = True  # False: a short last batch is padded (example_mask False)
    worker_count: int = 0  # 0: tokenize in this process
    worker_buffer_size: int = 2
    read_threads: int = 0  # grain ReadOptions.num_threads of the (main or worker) process
    prefetch: int = 2  # grain ReadOptions.prefetch_buffer_size, in batches
    shard_index: int = 0
    shard_count: int = 1

    def __post_init__(self) -> None:
        if self.batch_users < 1:
            raise ValueError(f"batch_users must be >= 1, got {self.batch_users}")
        for name in ("prefix_buckets", "suffix_buckets"):
            buckets_.check(getattr(self, name), name)
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"need 0 <= shard_index < shard_count, got {self.shard_index}, {self.shard_count}")
        if self.worker_count < 0:
            raise ValueError(f"worker_count must be >= 0, got {self.worker_count}")


def fit_to_buckets(prompts: PromptConfig, config: PipelineConfig) -> PromptConfig:
    """``prompts`` with ``max_prefix_tokens``/``max_suffix_tokens`` no larger than the largest buckets, so
    the budget (dropping old history) rather than `bucket` handles long prompts."""
    def tighter(current: int | None, largest: int) -> int:
        return largest if current is None else min(current, largest)

    return dataclasses.replace(prompts,
                               max_prefix_tokens=tighter(prompts.max_prefix_tokens, config.prefix_buckets[-1]),
                               max_suffix_tokens=tighter(prompts.max_suffix_tokens, config.suffix_buckets[-1]))


def bucket(length: int, buckets: Sequence[int], what: str) -> int:
    """The smallest bucket >= ``length``."""
    return buckets_.choose(length, buckets, what, hint="; set the prompt budget (PromptConfig.max_prefix_tokens / "
                           "max_suffix_tokens) to fit the buckets")


class TokenizeUser(grain.transforms.Map):
    """`Record` -> `UserPrompts` plus the candidates' item rows (runs in grain workers)."""

    def __init__(self, builder: PromptBuilder, item_index: Mapping[str, int]):
        self.builder = builder
        self.item_index = item_index

    def map(self, record: benchmark.Record) -> tuple[UserPrompts, tuple[int, ...]]:
        return self.builder.build(record), tuple(self.item_index[c] for c in record.candidates)


class Collate:
    """Pads a list of tokenized users into one static-shape batch (see module docstring)."""

    def __init__(self, batch_users: int, prefix_buckets: Sequence[int], suffix_buckets: Sequence[int], pad_id: int):
        self.batch_users = batch_users
        self.prefix_buckets = tuple(prefix_buckets)
        self.suffix_buckets = tuple(suffix_buckets)
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[tuple[UserPrompts, tuple[int, ...]]]) -> Batch:
        u_n = self.batch_users
        k_n = len(examples[0][0].candidates)
        if any(len(p.candidates) != k_n for p, _ in examples):
            raise ValueError(f"users in one batch have different candidate counts: {[len(p.candidates) for p, _ in examples]}")
        p_len = bucket(max(len(p.prefix_ids) for p, _ in examples), self.prefix_buckets, "prefix")
        s_len = bucket(max(len(s) for p, _ in examples for s in p.suffix_ids), self.suffix_buckets, "suffix")
        out: Batch = {
            "prefix_tokens": np.full((u_n, p_len), self.pad_id, np.int32),
            "prefix_positions": np.full((u_n, p_len), -1, np.int32),
            "prefix_lengths": np.zeros((u_n,), np.int32),
            "suffix_tokens": np.full((u_n, k_n, s_len), self.pad_id, np.int32),
            "suffix_positions": np.full((u_n, k_n, s_len), -1, np.int32),
            "suffix_lengths": np.zeros((u_n, k_n), np.int32),
            "labels": np.zeros((u_n, k_n), np.int32),
            "candidate_index": np.full((u_n, k_n), -1, np.int32),
            "candidate_ids": np.full((u_n, k_n), "", dtype=object),
            "user_ids": np.full((u_n,), "", dtype=object),
            "example_mask": np.zeros((u_n,), bool),
            "history_dropped": np.zeros((u_n,), np.int32),
        }
        for u, (prompts, rows) in enumerate(examples):
            n = len(prompts.prefix_ids)
            out["prefix_tokens"][u, p_len - n:] = prompts.prefix_ids
            out["prefix_positions"][u, p_len - n:] = np.arange(n)
            out["prefix_lengths"][u] = n
            for k, suffix in enumerate(prompts.suffix_ids):
                m = len(suffix)
                out["suffix_tokens"][u, k, :m] = suffix
                out["suffix_positions"][u, k, :m] = np.arange(n, n + m)
                out["suffix_lengths"][u, k] = m
            out["labels"][u] = prompts.labels
            out["candidate_index"][u] = rows
            out["candidate_ids"][u] = prompts.candidates
            out["user_ids"][u] = prompts.user_id
            out["example_mask"][u] = True
            out["history_dropped"][u] = prompts.dropped
        out["candidate_ids"] = out["candidate_ids"].astype(str)
        out["user_ids"] = out["user_ids"].astype(str)
        return out


def make_dataset(source: SplitSource, builder: PromptBuilder, config: PipelineConfig) -> grain.MapDataset:
    """The batched `grain.MapDataset` (index = global batch number, epochs included)."""
    ds = grain.MapDataset.source(source)
    global_users = config.batch_users * config.shard_count
    if len(ds) < global_users and config.drop_remainder:
        raise ValueError(f"{source!r}: {len(ds)} records, fewer than batch_users={config.batch_users} x "
                         f"{config.shard_count} host shard(s), and drop_remainder is on: no batch at all")
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    pad_id = builder.tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token (set tokenizer.pad_token)")
    batch_fn = collate = Collate(global_users, config.prefix_buckets, config.suffix_buckets, pad_id)
    if config.shard_count > 1:
        batch_fn = HostSlice(collate, global_users, config.shard_index, config.shard_count)
    ds = ds.map(TokenizeUser(builder, source.item_index))
    ds = ds.batch(global_users, drop_remainder=config.drop_remainder, batch_fn=batch_fn)
    return ds.repeat(config.num_epochs)


def make_iter_dataset(source: SplitSource, builder: PromptBuilder, config: PipelineConfig) -> grain.IterDataset:
    """`make_dataset` read in order, tokenized in ``worker_count`` processes (0: in this process)."""
    read = grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=config.prefetch)
    ds = make_dataset(source, builder, config).to_iter_dataset(read)
    if config.worker_count > 0:
        _ensure_absl_flags()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size))
        ds = ds.map(_own_memory)
    return ds


def _own_memory(batch: Batch) -> Batch:
    # Workers hand over arrays in shared memory, freed only when the array dies; plain copies let the
    # caller keep batches (e.g. in a replay buffer) without pinning shared-memory segments.
    return {k: np.array(v) for k, v in batch.items()}


def _ensure_absl_flags() -> None:
    # mp_prefetch reads grain's absl flags, which only an absl app parses; outside one (pytest, plain
    # scripts) the defaults apply.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_iterator(source: SplitSource, builder: PromptBuilder, config: PipelineConfig) -> grain.DatasetIterator:
    """A checkpointable iterator of batches (``get_state``/``set_state``). Close it (``.close()``) when
    worker processes are used."""
    return iter(make_iter_dataset(source, builder, config))


def batches_per_epoch(num_records: int, config: PipelineConfig) -> int:
    """Batches in one epoch (every host shard has the same count: one per global batch)."""
    g = config.batch_users * config.shard_count
    return num_records // g if config.drop_remainder else -(-num_records // g)


def count_cuts(batch: Batch, stats: BudgetStats | None = None) -> BudgetStats:
    """Adds a batch's budget cuts to ``stats`` (the builder's own counter lives in the worker processes)."""
    stats = BudgetStats() if stats is None else stats
    k_n = batch["labels"].shape[1]
    for dropped in batch["history_dropped"][batch["example_mask"]]:
        stats.record(k_n, int(dropped))
    return stats


def describe(batch: Batch) -> dict[str, Any]:
    """Shapes and dtypes of a batch (for logs)."""
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in batch.items()}
