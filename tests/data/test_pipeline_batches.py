"""Grain pipeline: static shapes, position conventions, shuffling, sharding and exact resume."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from _data_world import world_benchmark, world_tokenizer
from r2rank_jax.data.pipeline import (
    PipelineConfig, SplitSource, batches_per_epoch, count_cuts, fit_to_buckets, make_dataset, make_iterator,
)
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig

PROMPTS = PromptConfig(max_prompt_tokens=300, max_prefix_tokens=256, max_suffix_tokens=48)
CONFIG = PipelineConfig(batch_users=4, prefix_buckets=(128, 192, 256), suffix_buckets=(32, 48), seed=7)


@pytest.fixture(scope="module")
def source() -> SplitSource:
    return SplitSource(world_benchmark(), "valid")  # 15 users


@pytest.fixture(scope="module")
def builder(source) -> PromptBuilder:
    return PromptBuilder(world_tokenizer(), source.items, PROMPTS)


def take(it, n: int) -> list[dict[str, np.ndarray]]:
    return [next(it) for _ in range(n)]


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_source_is_random_access(source):
    assert len(source) == 15
    assert source[3] == source.records[3]
    assert pickle.loads(pickle.dumps(source))[3] == source[3]


def test_static_shapes_and_position_conventions(source, builder):
    u_n, k_n = CONFIG.batch_users, 20
    batch = next(make_iterator(source, builder, CONFIG))
    p_len, s_len = batch["prefix_tokens"].shape[1], batch["suffix_tokens"].shape[2]
    assert p_len in CONFIG.prefix_buckets and s_len in CONFIG.suffix_buckets
    shapes = {"prefix_tokens": (u_n, p_len), "prefix_positions": (u_n, p_len), "prefix_lengths": (u_n,),
              "suffix_tokens": (u_n, k_n, s_len), "suffix_positions": (u_n, k_n, s_len), "suffix_lengths": (u_n, k_n),
              "labels": (u_n, k_n), "candidate_index": (u_n, k_n), "candidate_ids": (u_n, k_n), "user_ids": (u_n,),
              "example_mask": (u_n,), "history_dropped": (u_n,)}
    assert {k: v.shape for k, v in batch.items()} == shapes
    for key in ("prefix_tokens", "prefix_positions", "suffix_tokens", "suffix_positions", "labels"):
        assert batch[key].dtype == np.int32, key
    pad = world_tokenizer().pad_token_id
    # The longest prefix picks the smallest bucket that holds it.
    longest = batch["prefix_lengths"].max()
    assert p_len == min(b for b in CONFIG.prefix_buckets if b >= longest)
    by_user = {r.user_id: r for r in source.records}
    for u in range(u_n):
        n = batch["prefix_lengths"][u]
        record = by_user[batch["user_ids"][u]]
        prompts = builder.build(record)
        np.testing.assert_array_equal(batch["prefix_tokens"][u, p_len - n:], prompts.prefix_ids)
        assert (batch["prefix_tokens"][u, :p_len - n] == pad).all()
        np.testing.assert_array_equal(batch["prefix_positions"][u], [-1] * (p_len - n) + list(range(n)))
        for k in range(k_n):
            m = batch["suffix_lengths"][u, k]
            np.testing.assert_array_equal(batch["suffix_tokens"][u, k, :m], prompts.suffix_ids[k])
            assert (batch["suffix_tokens"][u, k, m:] == pad).all()
            np.testing.assert_array_equal(batch["suffix_positions"][u, k],
                                          list(range(n, n + m)) + [-1] * (s_len - m))
        assert batch["labels"][u].sum() == 1
        assert list(batch["candidate_ids"][u]) == list(record.candidates)
        assert batch["candidate_ids"][u][batch["labels"][u].argmax()] == record.positive
        assert [list(source.items)[i] for i in batch["candidate_index"][u]] == list(record.candidates)
    assert batch["example_mask"].all()


def test_epochs_cover_the_split_and_reshuffle(source, builder):
    config = dataclasses.replace(CONFIG, num_epochs=2)
    assert batches_per_epoch(len(source), config) == 3  # 15 users // 4, remainder dropped
    batches = list(make_iterator(source, builder, config))
    assert len(batches) == 6
    epoch1 = np.concatenate([b["user_ids"] for b in batches[:3]])
    epoch2 = np.concatenate([b["user_ids"] for b in batches[3:]])
    assert len(set(epoch1)) == 12 and len(set(epoch2)) == 12
    assert list(epoch1) != list(epoch2)  # reshuffled with seed + epoch
    again = list(make_iterator(source, builder, config))
    assert_same(batches, again)  # same seed, same batches
    other = next(make_iterator(source, builder, dataclasses.replace(config, seed=8)))
    assert list(other["user_ids"]) != list(batches[0]["user_ids"])


def test_restored_iterator_continues_exactly_across_epoch_boundary(source, builder):
    it = make_iterator(source, builder, CONFIG)  # 3 batches per epoch, repeating forever
    take(it, 2)
    state = it.get_state()
    expected = take(it, 5)  # batches 2..6: crosses into epochs 2 and 3
    restored = make_iterator(source, builder, CONFIG)
    restored.set_state(state)
    assert_same(take(restored, 5), expected)
    assert pickle.loads(pickle.dumps(state)) == state  # checkpointable


def test_short_last_batch_is_padded_when_not_dropped(source, builder):
    config = dataclasses.replace(CONFIG, drop_remainder=False, shuffle=False, num_epochs=1)
    batches = list(make_iterator(source, builder, config))
    assert len(batches) == 4
    last = batches[-1]
    assert last["example_mask"].tolist() == [True, True, True, False]
    assert last["prefix_tokens"].shape == batches[0]["prefix_tokens"].shape[:1] + last["prefix_tokens"].shape[1:]
    assert (last["prefix_positions"][3] == -1).all() and (last["suffix_positions"][3] == -1).all()
    assert (last["candidate_index"][3] == -1).all() and last["labels"][3].sum() == 0
    users = [u for b in batches for u, m in zip(b["user_ids"], b["example_mask"]) if m]
    assert users == [r.user_id for r in source.records]


def test_host_shards_are_disjoint_and_complete(source, builder):
    seen = []
    for shard in range(2):
        config = dataclasses.replace(CONFIG, batch_users=2, shard_index=shard, shard_count=2, num_epochs=1,
                                     drop_remainder=False)
        seen.append([u for b in make_iterator(source, builder, config)
                     for u, m in zip(b["user_ids"], b["example_mask"]) if m])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(r.user_id for r in source.records)


def test_budget_cuts_are_reported_in_batches(source):
    tight = PromptBuilder(world_tokenizer(), source.items, dataclasses.replace(PROMPTS, max_prefix_tokens=150))
    config = dataclasses.replace(CONFIG, num_epochs=1, drop_remainder=False, shuffle=False)
    batches = list(make_iterator(source, tight, config))
    assert all(b["prefix_tokens"].shape[1] == 192 or b["prefix_tokens"].shape[1] == 128 for b in batches)
    assert all((b["prefix_lengths"] <= 150).all() for b in batches)
    stats = None
    for b in batches:
        stats = count_cuts(b, stats)
    assert stats.examples == 15
    assert stats.cut_examples == sum(int((b["history_dropped"] > 0).sum()) for b in batches) > 0
    assert stats.cut_prompts == 20 * stats.cut_examples


def test_bad_configs_fail_early(source, builder):
    with pytest.raises(ValueError, match="increasing"):
        PipelineConfig(prefix_buckets=(256, 128))
    with pytest.raises(ValueError, match="shard_index"):
        PipelineConfig(shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="fewer than batch_users"):
        make_dataset(source, builder, dataclasses.replace(CONFIG, batch_users=16))
    unbounded = PromptBuilder(world_tokenizer(), source.items)
    small = dataclasses.replace(CONFIG, prefix_buckets=(64, 160))
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        next(make_iterator(source, unbounded, small))
    fitted = fit_to_buckets(PromptConfig(max_suffix_tokens=40), small)
    assert (fitted.max_prefix_tokens, fitted.max_suffix_tokens) == (160, 40)
    batch = next(make_iterator(source, PromptBuilder(world_tokenizer(), source.items, fitted), small))
    assert batch["prefix_tokens"].shape[1] == 160
