"""Prompt rendering: wording, order, and prefix ids + suffix ids == ids of the full rendered prompt."""
from __future__ import annotations

import pytest

from _data_world import world_benchmark, world_tokenizer
from r2rank_jax.data import benchmark
from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig, PromptSplitError

ITEMS = {
    "a": {"item_id": "a", "title": "Marvel&rsquo;s Spider-Man - PlayStation 4"},
    "b": {"item_id": "b", "title": "Tom &amp; Jerry\n  Deluxe", "store": "Acme  Games", "description": "x " * 200},
    "c": {"item_id": "c", "title": "Zelda: Breath of the Wild 2 (Nintendo Switch)"},
    "d": {"item_id": "d", "title": "Fire Emblem: The Sacred Stones"},
    "e": {"item_id": "e", "title": "  spaces   and\ttabs  "},
}
RECORD = benchmark.Record("u7", ("a", "b", "c"), ("d", "e", "b"), "e", profile="age: 30; likes: RPGs")


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from r2rank_jax.models.gguf import load_gguf_tokenizer

    return load_gguf_tokenizer(smollm2_path)


def reference_ids(tokenizer, builder: PromptBuilder, record: benchmark.Record, k: int, history=None) -> list[int]:
    """Independent path: the full user message through apply_chat_template(tokenize=True)."""
    history = record.history if history is None else history
    message = pt.pointwise_message(builder.config.variant, builder.profile(record),
                                   [builder.item_text(i) for i in history], builder.item_text(record.candidates[k]))
    out = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True)
    return list(out["input_ids"])


def assert_split_exact(tokenizer, builder: PromptBuilder, record: benchmark.Record) -> None:
    prompts = builder.build(record)
    for k in range(len(record.candidates)):
        assert prompts.prompt_ids(k) == reference_ids(tokenizer, builder, record, k, prompts.history), k
        assert prompts.prefix_text + prompts.suffix_texts[k] == builder.render(
            pt.pointwise_message(builder.config.variant, builder.profile(record),
                                 [builder.item_text(i) for i in prompts.history],
                                 builder.item_text(record.candidates[k])))


@pytest.mark.parametrize("variant", ["cot", "no_cot"])
def test_split_is_exact_smollm2(smollm2, variant):
    builder = PromptBuilder(smollm2, ITEMS, PromptConfig(variant=variant, item_fields=("store", "description"),
                                                         check_split=True))
    assert_split_exact(smollm2, builder, RECORD)
    prompts = builder.build(RECORD)
    assert prompts.prefix_text.startswith("<|im_start|>system\n")  # SmolLM2's default system turn
    assert prompts.prefix_text.endswith(pt.context_line(builder.profile(RECORD),
                                                        [builder.item_text(i) for i in RECORD.history]))
    assert all(s.startswith("Candidate Item: ") and s.endswith("<|im_end|>\n<|im_start|>assistant\n")
               for s in prompts.suffix_texts)


def test_split_is_exact_on_games6k(smollm2, shared_data_dir):
    from r2rank_jax.data.recbole import read_items

    items = {i: it.to_json() for i, it in read_items(shared_data_dir / "amazon18_video_games" / "Games-6k.item").items()}
    ids = [i for i, obj in items.items() if "&amp;" in obj["title"]][:10] + list(items)[:30]
    builder = PromptBuilder(smollm2, items, PromptConfig(check_split=True))
    record = benchmark.Record("g", tuple(ids[:20]), tuple(ids[20:40]), ids[25])
    assert_split_exact(smollm2, builder, record)
    assert "&amp;" not in builder.build(record).prefix_text


def test_split_is_exact_synthetic_tokenizer():
    tok = world_tokenizer()
    bench = world_benchmark()
    items = benchmark.load_items(bench)
    builder = PromptBuilder(tok, items, PromptConfig(check_split=True))
    for record in benchmark.load_split(bench, "valid")[:5]:
        assert_split_exact(tok, builder, record)
    assert_split_exact(tok, PromptBuilder(tok, ITEMS, PromptConfig(check_split=True)), RECORD)


def test_wording_order_and_text_cleaning():
    tok = world_tokenizer()
    builder = PromptBuilder(tok, ITEMS, PromptConfig(item_fields=("store",)))
    prompts = builder.build(RECORD)
    text = prompts.prefix_text + prompts.suffix_texts[2]
    instructions = (
        "You are a recommendation assistant. Analyze the user's history in depth and decide whether to recommend "
        "the candidate item.\nRequirements: Generate a response with the following three parts in order:\n"
        "#Initial reasoning: thoroughly analyze relevant evidence from **USER CONTEXT** and **CANDIDATE ITEM**.\n"
        "#Self-check: identify mistakes, missing evidence, uncertainties, or over-weighted signals in the initial "
        "reasoning.\n#Final conclusion and suggestion: produce a concise final rationale and decision.\n"
        "Finally output: <answer>Recommend</answer> or <answer>Not Recommend</answer>.\n"
        "User Context: age: 30; likes: RPGs, interacted items (oldest first): 1. Marvel\u2019s Spider-Man - "
        "PlayStation 4; 2. Tom & Jerry Deluxe (store: Acme Games); 3. Zelda: Breath of the Wild 2 (Nintendo Switch)\n"
        "Candidate Item: Tom & Jerry Deluxe (store: Acme Games)<|im_end|>\n")
    assert text == "<|im_start|>user\n" + instructions + "<|im_start|>assistant\n"
    assert text.index("User Context:") < text.index("Candidate Item:")
    assert prompts.labels == (0, 1, 0)
    assert builder.item_text("e") == "spaces and tabs"


def test_no_profile_and_no_cot_wording():
    tok = world_tokenizer()
    builder = PromptBuilder(tok, ITEMS, PromptConfig(variant="no_cot", use_profile=False))
    prompts = builder.build(RECORD)
    assert "User Context: interacted items (oldest first): 1. " in prompts.prefix_text
    assert "#Self-check" not in prompts.prefix_text
    assert "Output only the decision: <answer>Recommend</answer> or <answer>Not Recommend</answer>." in prompts.prefix_text


def test_field_caps_in_tokens():
    tok = world_tokenizer()
    builder = PromptBuilder(tok, ITEMS, PromptConfig(item_fields=("description",), field_max_tokens=5, title_max_tokens=3))
    text = builder.item_text("b")
    title, _, field = text.partition(" (description: ")
    assert len(tok(title, add_special_tokens=False)["input_ids"]) <= 3
    assert len(tok(field.rstrip(")"), add_special_tokens=False)["input_ids"]) <= 5
    assert "Tom".startswith(title) or title.startswith("Tom")


def test_unknown_item_names_user():
    builder = PromptBuilder(world_tokenizer(), ITEMS)
    with pytest.raises(KeyError, match="user 'u9'.*'zz'"):
        builder.build(benchmark.Record("u9", ("a",), ("zz", "d"), "d"))


def test_template_that_alters_content_is_rejected():
    class Shouting:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return messages[-1]["content"].upper()

    with pytest.raises(PromptSplitError):
        PromptBuilder(Shouting(), ITEMS).split_rendered(None, ["x"], "candidate")


def test_listwise_prompt_lists_candidates_in_order():
    tok = world_tokenizer()
    builder = PromptBuilder(tok, ITEMS)
    prompt = builder.listwise(RECORD, order=(2, 0, 1))
    assert prompt.text.index("User Context:") < prompt.text.index("Candidate Items:\n[1] ")
    listed = prompt.text.split("Candidate Items:\n")[1].split("<|im_end|>")[0].split("\n")
    assert listed == ["[1] Tom & Jerry Deluxe", "[2] Fire Emblem: The Sacred Stones", "[3] spaces and tabs"]
    assert "numbers of all 3 candidates" in prompt.text
    assert list(prompt.ids) == tok(prompt.text, add_special_tokens=False)["input_ids"]
    assert prompt.labels == (0, 1, 0) and prompt.order == (2, 0, 1)
    with pytest.raises(ValueError, match="permutation"):
        builder.listwise(RECORD, order=(0, 0, 1))


def test_an_item_field_no_item_has_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"item_fields \['stroe'\] are in no item.*'description'.*'store'"):
        PromptBuilder(world_tokenizer(), ITEMS, PromptConfig(item_fields=("store", "stroe")))


def test_data_item_fields_reach_the_teacher_and_the_model_prompts():
    import dataclasses
    import pathlib

    from r2rank_jax.config import load_config_file
    from r2rank_jax.run import builders, teacher

    cfg = load_config_file(str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "debug_cpu.py"))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, item_fields=("store",)))
    teacher_cfg = teacher.from_experiment(cfg)[2]
    model_cfg = builders.prompt_configs(cfg, batch_users=2)[0]
    for config in (teacher_cfg, model_cfg):
        assert config.item_fields == ("store",)
        assert PromptBuilder(world_tokenizer(), ITEMS, config).item_text("b") == "Tom & Jerry Deluxe (store: Acme Games)"
