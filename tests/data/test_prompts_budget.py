"""Token budget: oldest history items go first, the candidate never; cuts are counted; clear errors."""
from __future__ import annotations

import pytest

from _data_world import world_tokenizer
from r2rank_jax.data import benchmark
from r2rank_jax.data.prompts import BudgetStats, PromptBuilder, PromptConfig, PromptTooLongError

ITEMS = {str(i): {"item_id": str(i), "title": f"Game number {i} - Racing - PS5 - Vortex Games"} for i in range(30)}
ITEMS["long"] = {"item_id": "long", "title": " ".join(["Ultra Collector's Deluxe Remastered Edition"] * 20)}
RECORD = benchmark.Record("u1", tuple(str(i) for i in range(10)), ("20", "21", "22"), "21")


def sizes(config: PromptConfig = PromptConfig()) -> tuple[int, int]:
    prompts = PromptBuilder(world_tokenizer(), ITEMS, config).build(RECORD)
    return len(prompts.prefix_ids), max(len(s) for s in prompts.suffix_ids)


def test_no_cut_when_it_fits():
    prefix, suffix = sizes()
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_prompt_tokens=prefix + suffix))
    prompts = builder.build(RECORD)
    assert prompts.dropped == 0 and prompts.history == RECORD.history
    assert builder.stats == BudgetStats(examples=1)


def test_drops_oldest_first_and_fewest():
    prefix, suffix = sizes()
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_prompt_tokens=prefix + suffix - 1))
    prompts = builder.build(RECORD)
    assert prompts.dropped == 1
    assert prompts.history == RECORD.history[1:]  # the oldest went
    assert "Game number 0 " not in prompts.prefix_text and "Game number 9 " in prompts.prefix_text
    for k, c in enumerate(RECORD.candidates):  # the candidates are all there, uncut
        assert f"Candidate Item: Game number {c} - Racing - PS5 - Vortex Games<|im_end|>" in prompts.suffix_texts[k]
        assert len(prompts.prefix_ids) + len(prompts.suffix_ids[k]) <= prefix + suffix - 1

    # A tighter budget drops more, still from the oldest end, and always the fewest that fit.
    budget = prefix + suffix - 40
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_prompt_tokens=budget))
    tight = builder.build(RECORD)
    assert tight.dropped > 1 and tight.history == RECORD.history[tight.dropped:]
    assert len(tight.prefix_ids) + suffix <= budget
    one_less = benchmark.Record("u1", RECORD.history[tight.dropped - 1:], RECORD.candidates, RECORD.positive)
    longer = PromptBuilder(world_tokenizer(), ITEMS).build(one_less)
    assert len(longer.prefix_ids) + suffix > budget


def test_prefix_limit_and_stats_count_cut_prompts():
    prefix, _ = sizes()
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_prefix_tokens=prefix - 1))
    builder.build(RECORD)
    builder.build(benchmark.Record("u2", ("1",), ("20", "21"), "20"))
    builder.build(RECORD)
    assert builder.stats.examples == 3
    assert builder.stats.cut_examples == 2
    assert builder.stats.cut_prompts == 6  # K=3 prompts per cut user
    assert builder.stats.dropped_history_items == 2
    assert builder.stats.as_dict()["cut_prompts"] == 6


def test_prompt_that_cannot_fit_names_user_and_candidate():
    record = benchmark.Record("u42", ("1", "2"), ("20", "long"), "20")
    prompts = PromptBuilder(world_tokenizer(), ITEMS).build(record)
    budget = len(prompts.prefix_ids) + len(prompts.suffix_ids[1]) - 60  # more than the whole history
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_prompt_tokens=budget))
    with pytest.raises(PromptTooLongError, match=r"user 'u42'.*candidate 'long'.*even with an empty history"):
        builder.build(record)


def test_suffix_over_its_limit_names_candidate():
    builder = PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(max_suffix_tokens=40, title_max_tokens=64))
    with pytest.raises(PromptTooLongError, match=r"user 'u1'.*candidate 'long'.*max_suffix_tokens=40"):
        builder.build(benchmark.Record("u1", ("1",), ("20", "long"), "20"))


def test_listwise_budget_drops_history_keeps_candidates():
    builder = PromptBuilder(world_tokenizer(), ITEMS)
    full = builder.listwise(RECORD)
    cut = builder.listwise(RECORD, max_tokens=len(full.ids) - 1)
    assert cut.dropped >= 1 and cut.history == RECORD.history[cut.dropped:]
    assert len(cut.ids) <= len(full.ids) - 1
    assert all(f"] Game number {c} " in cut.text for c in RECORD.candidates)
    with pytest.raises(PromptTooLongError, match="user 'u1'"):
        builder.listwise(RECORD, max_tokens=50)
