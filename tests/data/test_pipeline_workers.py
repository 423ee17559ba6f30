"""Tokenization in grain worker processes gives the in-process batches, and resumes exactly."""
from __future__ import annotations

import dataclasses

import numpy as np

from _data_world import world_benchmark, world_tokenizer
from r2rank_jax.data.pipeline import PipelineConfig, SplitSource, make_iterator
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig


def test_worker_processes_match_in_process_and_restore():
    source = SplitSource(world_benchmark(), "valid")
    builder = PromptBuilder(world_tokenizer(), source.items,
                            PromptConfig(max_prompt_tokens=300, max_prefix_tokens=256, max_suffix_tokens=48))
    config = PipelineConfig(batch_users=4, prefix_buckets=(128, 192, 256), suffix_buckets=(32, 48), seed=1)
    expected = [next(it) for it in [make_iterator(source, builder, config)] for _ in range(7)]

    workers = dataclasses.replace(config, worker_count=2)
    it = make_iterator(source, builder, workers)
    try:
        got = [next(it) for _ in range(4)]
        state = it.get_state()
        got += [next(it) for _ in range(3)]
    finally:
        it.close()
    restored = make_iterator(source, builder, workers)
    try:
        restored.set_state(state)
        resumed = [next(restored) for _ in range(3)]
    finally:
        restored.close()
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for a, b in zip(expected[4:], resumed):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
