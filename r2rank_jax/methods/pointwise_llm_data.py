"""Prompts, verbalizer token ids and training pairs of the pointwise LLM baselines (TALLRec, Prompt4NR).

Prompt: the method's question, then R2Rank's user-context line and candidate line, rendered through
the chat template and split into a shared prefix and a per-candidate suffix exactly like
`data.prompts.PromptBuilder` (only the instructions differ), so K candidates share one prefix::

    {question}
    User Context: {profile}, interacted items (oldest first): 1. A; 2. B
    Candidate Item: {title}<end of user turn><assistant header>

The answer is the assistant's first token(s): answer words are tokenized as they follow the
template's closing text (`eval.verbalizer.encode_answers`), so e.g. SmolLM2's ``"Yes"`` is one token.

Training pairs (`training_pairs`): users of the train split in a seeded random order; per user the
positive (label 1) and `negatives` of its other saved candidates drawn without replacement (label 0).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from r2rank_jax.config import ConfigError, PointwiseLLMSpec
from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.pipeline import PipelineConfig, fit_to_buckets
from r2rank_jax.data.prompts import PromptBuilder, PromptConfig, PromptSplitError
from r2rank_jax.eval.verbalizer import encode_answers
from r2rank_jax.run.builders import prompt_config
from r2rank_jax.train.sft_data import SFTExample


class QuestionPromptBuilder(PromptBuilder):
    """`PromptBuilder` whose pointwise user message is ``question + context line + candidate line``."""

    def __init__(self, tokenizer: Any, items, config: PromptConfig, question: str):
        super().__init__(tokenizer, items, config)
        self.question = question.rstrip("\n") + "\n"

    def split_rendered(self, profile, history, candidate) -> tuple[str, str]:
        rendered = self.render(self.question + pt.context_line(profile, history) + pt.candidate_part(candidate))
        cut = rendered.rfind(pt.candidate_part(candidate))
        if cut <= 0 or rendered[cut - 1] != "\n":
            raise PromptSplitError(f"the chat template altered the user message: no candidate line in {rendered!r}")
        return rendered[:cut], rendered[cut:]

    def closing_text(self) -> str:
        """What the chat template puts after the user message (end of turn + assistant header)."""
        marker = "\x00candidate\x00"
        rendered = self.render(marker)
        return rendered[rendered.rindex(marker) + len(marker):]


def question_text(template: str, spec: PointwiseLLMSpec) -> str:
    return template.format(yes=spec.relevant_words[0], no=spec.irrelevant_words[0])


def prompts_and_pipeline(cfg, tok: Any, items, question: str, batch_users: int
                         ) -> tuple[QuestionPromptBuilder, PipelineConfig]:
    """The method's prompt builder and the scoring pipeline config (the run's buckets and budget)."""
    d = cfg.data
    pipeline = PipelineConfig(batch_users=batch_users, prefix_buckets=d.prefix_buckets,
                              suffix_buckets=d.suffix_buckets, seed=cfg.seed)
    prompt_cfg = fit_to_buckets(prompt_config(cfg, "no_cot"), pipeline)
    return QuestionPromptBuilder(tok, items, prompt_cfg, question), pipeline


@dataclasses.dataclass(frozen=True)
class Verbalizer:
    """Answer words and their token ids. Class 0 = relevant, 1 = irrelevant.

    word_ids[a]: first token of word a; word_class[a]: its class; responses[c]: all tokens of class c's
    first word (TALLRec's LM target)."""
    words: tuple[str, ...]
    word_ids: tuple[int, ...]
    word_class: tuple[int, ...]
    responses: tuple[tuple[int, ...], tuple[int, ...]]


def make_verbalizer(tok: Any, closing: str, spec: PointwiseLLMSpec, method: str, all_words: bool) -> Verbalizer:
    """Token ids of the answer words as they follow `closing`; `all_words=False` keeps the first word of
    each class. Two words sharing a first token is an error naming the config fields."""
    rel, irr = tuple(spec.relevant_words), tuple(spec.irrelevant_words)
    if not rel or not irr or not all(w.strip() for w in rel + irr):
        raise ConfigError(f"{method}.relevant_words / {method}.irrelevant_words: need at least one non-empty word "
                          f"each, got {rel} / {irr}")
    if not all_words:
        rel, irr = rel[:1], irr[:1]
    words = rel + irr
    try:
        encoded = encode_answers(tok, words, after=closing)
    except ValueError as e:
        raise ConfigError(f"{method}.relevant_words / irrelevant_words: {e}") from None
    first = [ids[0] for ids in encoded]
    if len(set(first)) != len(first):
        clash = {w: f for w, f in zip(words, first) if first.count(f) > 1}
        raise ConfigError(f"{method}.relevant_words / irrelevant_words: answer words share a first token "
                          f"(word → token id: {clash}); every word must start with its own token")
    word_class = tuple([0] * len(rel) + [1] * len(irr))
    return Verbalizer(words, tuple(first), word_class, (encoded[0], encoded[len(rel)]))


def training_pairs(records: Sequence[Record], negatives: int, limit: int, seed: int
                   ) -> list[tuple[Record, int, int]]:
    """(record, candidate index, label) pairs (module docstring), stopping once `limit` pairs are drawn
    (0: all users); labels 1 for the positive, 0 for the drawn negatives."""
    if negatives < 0:
        raise ConfigError(f"negatives_per_positive must be >= 0, got {negatives}")
    rng = np.random.default_rng(seed)
    out: list[tuple[Record, int, int]] = []
    for i in rng.permutation(len(records)):
        record = records[int(i)]
        pos = record.candidates.index(record.positive)
        others = [k for k in range(len(record.candidates)) if k != pos]
        drawn = rng.choice(len(others), size=min(negatives, len(others)), replace=False) if others else []
        out.append((record, pos, 1))
        out.extend((record, others[int(j)], 0) for j in drawn)
        if limit and len(out) >= limit:
            break
    return out


def sft_examples(pairs: Sequence[tuple[Record, int, int]], builder: PromptBuilder,
                 response: dict[int, tuple[int, ...]]) -> list[SFTExample]:
    """Pairs → `SFTExample`s with the full prompt ids and `response[label]` as the response ids."""
    built: dict[str, Any] = {}
    out = []
    for record, k, label in pairs:
        if record.user_id not in built:
            built[record.user_id] = builder.build(record)
        out.append(SFTExample(record.user_id, record.candidates[k], label, tuple(built[record.user_id].prompt_ids(k)),
                              tuple(response[label]), where=f"train user {record.user_id}"))
    return out
