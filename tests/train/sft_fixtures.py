"""Test fixtures for SFT: a small synthetic world, its tokenizer, and a *scripted* teacher.

The scripted rationale generator reasons over the world's known item attributes (genre, platform,
brand): it names the candidate's attributes, says for each whether it matches (appears among) the
user's history items, and decides Recommend iff the genre matches. Only examples whose
decision equals the label are kept (the paper's "filtered for a correct decision"). It is a test
fixture only; the real teacher lives in r2rank_jax.teacher.
"""
from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from r2rank_jax.data import benchmark
from r2rank_jax.data.prompt_text import ANSWER_CLOSE, ANSWER_OPEN, NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig
from r2rank_jax.data.synthetic import WorldConfig, attribute_match_scores, build_benchmark, load_item_attributes
from r2rank_jax.data.tokenizer import train_world_tokenizer
from r2rank_jax.models.config import ModelConfig

SELF_CHECKS = ("Self-check: the history is short.", "Self-check: the genre is the strongest signal.")


def make_world(out: pathlib.Path, num_users: int = 160, seed: int = 0, history_len: int = 5) -> tuple[pathlib.Path, object]:
    """(benchmark dir, tokenizer) of a small world with `history_len` history items and 5 candidates per user."""
    build_benchmark(out, WorldConfig(num_users=num_users, num_items=60, seed=seed), history_len=history_len, num_candidates=5)
    tokenizer = train_world_tokenizer(out / "benchmark", out / "tokenizer", vocab_size=1024)
    return out / "benchmark", tokenizer


def tiny_config(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=-(-vocab_size // 8) * 8, hidden_size=64, intermediate_size=128, num_layers=2,
                       num_heads=4, num_kv_heads=2, head_dim=16, eos_token_id=None)


def scripted_rationale(attributes: Mapping[str, Mapping[str, str]], history: Sequence[str], candidate: str) -> tuple[str, str]:
    """(rationale text ending in the answer tag, decision) for one (history, candidate)."""
    cand = attributes[candidate]
    parts, matches = [], {}
    for a in ("genre", "platform", "brand"):
        matches[a] = cand[a] in {attributes[h][a] for h in history}
        parts.append(f"{a} {cand[a]} {'matches' if matches[a] else 'does not match'}")
    decision = RECOMMEND if matches["genre"] else NOT_RECOMMEND
    verdict = "matches" if matches["genre"] else "does not match"
    text = (f"#Initial reasoning: {'; '.join(parts)}.\n#{SELF_CHECKS[int(matches['platform'])]}\n"
            f"#Final conclusion and suggestion: the genre {verdict}.\n{ANSWER_OPEN}{decision}{ANSWER_CLOSE}")
    return text, decision


def write_corpus(benchmark_dir: pathlib.Path, tokenizer, split: str, out: pathlib.Path,
                 max_users: int | None = None) -> int:
    """Per user: the positive and the easiest negative (lowest attribute-match score), scripted
    rationales, kept when the decision equals the label. Returns the number of lines written."""
    attributes = load_item_attributes(benchmark_dir)
    builder = PromptBuilder(tokenizer, benchmark.load_items(benchmark_dir), PromptConfig())
    lines = []
    for record in benchmark.load_split(benchmark_dir, split)[:max_users]:
        prompts = builder.build(record)
        scores = attribute_match_scores(attributes, record.history, record.candidates)
        negatives = [k for k, c in enumerate(record.candidates) if c != record.positive]
        for k in (record.candidates.index(record.positive), min(negatives, key=lambda j: scores[j])):
            label = int(record.candidates[k] == record.positive)
            text, decision = scripted_rationale(attributes, record.history, record.candidates[k])
            if (decision == RECOMMEND) != bool(label):
                continue
            lines.append({"user_id": record.user_id, "candidate": record.candidates[k], "label": label,
                          "prompt_ids": prompts.prompt_ids(k), "response": text})
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return len(lines)


def label_balance(path: pathlib.Path) -> float:
    labels = [json.loads(line)["label"] for line in path.read_text().splitlines()]
    return float(np.mean(labels))


def random_examples(n: int, vocab: int = 40, seed: int = 0, max_prompt: int = 12, max_response: int = 8):
    """`SFTExample`s of random ids (no tokenizer): label = parity of the first response token."""
    from r2rank_jax.train.sft_data import SFTExample

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(3, vocab, int(rng.integers(2, max_prompt + 1)))
        response = rng.integers(3, vocab, int(rng.integers(1, max_response + 1)))
        out.append(SFTExample(str(i), str(i), int(response[0] % 2), tuple(int(x) for x in prompt),
                              tuple(int(x) for x in response), f"random:{i + 1}"))
    return out
